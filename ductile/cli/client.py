"""HTTP client for CLI commands that talk to a running gateway.

``httpx`` is imported inside the calls so that importing this module stays cheap (``ductile
version`` and ``--help`` must not pay for the web stack).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from ductile.cli.output import CliFailure
from ductile.config.model import DEFAULT_API_LISTEN

UNREACHABLE_HINT = "(is it running? try 'ductile system status')"
# A request carrying an Idempotency-Key is sent at most this many times when the transport fails.
IDEMPOTENT_ATTEMPTS = 3


class GatewayHttpError(CliFailure):
    """HTTP >= 400 from the gateway: ``<METHOD> <path> failed (<code>): <error>``."""

    def __init__(self, method: str, path: str, status: int, error: str, body: Any = None) -> None:
        super().__init__(f"{method} {path} failed ({status}): {error}")
        self.status = status
        self.error = error
        self.body = body


def listen_url(listen: str) -> str:
    """``http://<api.listen>``, with a wildcard bind address replaced by loopback."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = listen, "8080"
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


DEFAULT_URL = listen_url(DEFAULT_API_LISTEN)


def default_api_url(config: str | None = None, config_dir: str | None = None) -> str:
    """``http://<api.listen>`` from the config when one is found, else the default.

    An explicitly named config that fails to load is an error (``config error: …``); a config
    found by discovery that fails to load falls back to the default URL. Any other exception is
    a fault of ours and goes to the CLI's one internal-error report, never to a silent default.
    """
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError
    from ductile.config.loader import load_config

    try:
        cfg = load_config(find_config(config, config_dir))
    except ConfigError as exc:
        if config is not None or config_dir is not None:
            raise CliFailure(str(exc), prefix="config error") from None
        return DEFAULT_URL
    return listen_url(cfg.api.listen)


def require_local_host(url: str) -> None:
    """Credentials go only to loopback, private or link-local hosts (cli.md §2.6)."""
    host = urlsplit(url).hostname or ""
    if not host:
        raise CliFailure(f"invalid --api-url {url!r}")
    if host == "localhost" or host.endswith(".localhost"):
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        import socket

        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return  # unresolvable: the request itself reports the gateway as unreachable
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not (address.is_loopback or address.is_private or address.is_link_local):
            raise CliFailure(f"refusing to send credentials to non-local host {host}")


def error_text(body: Any, fallback: str) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return fallback


class GatewayClient:
    def __init__(self, api_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("DUCTILE_API_KEY")
        self.timeout = timeout

    def unreachable(self, reason: object) -> CliFailure:
        return CliFailure(f"cannot reach the gateway at {self.api_url}: {reason} {UNREACHABLE_HINT}")

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True,
                idempotency_key: str | None = None) -> Any:
        """One call; with ``idempotency_key`` (sent as ``Idempotency-Key``) a request whose answer
        was lost in transit is sent again with the same key, which the gateway answers with the
        job the first one made (api.md §1). Without a key nothing is retried: it could enqueue twice."""
        import httpx

        headers = {"Accept": "application/json"}
        if auth and self.api_key:
            require_local_host(self.api_url)
            headers["Authorization"] = f"Bearer {self.api_key}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        attempts = IDEMPOTENT_ATTEMPTS if idempotency_key is not None else 1
        for attempt in range(1, attempts + 1):
            try:
                resp = httpx.request(method, self.api_url + path, json=body, headers=headers, timeout=self.timeout)
                break
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise self.unreachable(exc) from None
                print(f"retrying {method} {path} with the same Idempotency-Key ({exc})", file=sys.stderr)
                time.sleep(0.5 * attempt)
            except httpx.HTTPError as exc:
                raise self.unreachable(exc) from None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text.strip() or resp.reason_phrase}
        if resp.status_code >= 400:
            raise GatewayHttpError(method, path, resp.status_code, error_text(data, str(data)), data)
        return data
