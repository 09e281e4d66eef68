"""HTTP client for CLI commands that talk to a running gateway."""

from __future__ import annotations

import os
from typing import Any

from ductile.cli.output import CliFailure

DEFAULT_URL = "http://127.0.0.1:8080"


def default_api_url(config: str | None = None, config_dir: str | None = None) -> str:
    """``http://<api.listen>`` from the config when one is found, else the default."""
    try:
        from ductile.config.discovery import find_config
        from ductile.config.loader import load_config

        cfg = load_config(find_config(config, config_dir))
        return f"http://{cfg.api.listen}"
    except Exception:
        return DEFAULT_URL


class GatewayClient:
    def __init__(self, api_url: str, api_key: str | None) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("DUCTILE_API_KEY")

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        import httpx

        headers = {"Accept": "application/json"}
        if auth and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            resp = httpx.request(method, self.api_url + path, json=body, headers=headers, timeout=30.0)
        except httpx.HTTPError as exc:
            raise CliFailure(
                f"cannot reach the gateway at {self.api_url}: {exc} (is it running? try 'ductile system status')"
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text.strip() or resp.reason_phrase}
        if resp.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else str(data)
            raise CliFailure(f"{method} {path} failed ({resp.status_code}): {message}")
        return data
