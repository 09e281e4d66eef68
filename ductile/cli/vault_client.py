"""The keyless ``ductile vault`` verbs' one way in: a POST to the running daemon's ``/vault/*``
(vault.md §4), over the management socket or the API, with the admin token.

Where to: ``--api-url``, else ``unix://<api.management_socket>`` when that socket exists, else
``http://<api.listen>`` when the API is enabled. The token: ``--token``, else
``$DUCTILE_VAULT_TOKEN`` (trimmed). Values never pass through argv: the callers read them from
stdin, and no message here quotes a request body.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ductile.cli.output import CliFailure

if TYPE_CHECKING:
    from ductile.config.model import Config

TOKEN_ENV = "DUCTILE_VAULT_TOKEN"
URL_REQUIRED = "--api-url is required (vault writes go through the daemon)"
TOKEN_REQUIRED = f"vault admin token required (--token or {TOKEN_ENV})"
UNIX_NEEDS_PATH = "--api-url unix:// needs a socket path (unix:///path/to/vault-admin.sock)"
UNIX = "unix://"
TIMEOUT_S = 30.0


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def api_url(given: str | None, cfg: Config | None) -> str:
    """``--api-url``, or the default of vault.md §4."""
    if given:
        return given
    if cfg is not None:
        sock = cfg.api.management_socket
        if sock is not None and _is_socket(sock):
            return f"{UNIX}{sock}"
        if cfg.api.enabled:
            host, _, port = cfg.api.listen.rpartition(":")
            # A wildcard listen address is reached on loopback.
            host = "127.0.0.1" if host.strip("[]") in ("", "0.0.0.0", "::") else host
            return f"http://{host}:{port}"
    raise CliFailure(URL_REQUIRED)


def admin_token(given: str | None) -> str:
    token = (given if given is not None else os.environ.get(TOKEN_ENV, "")).strip()
    if not token:
        raise CliFailure(TOKEN_REQUIRED)
    return token


def _client(url: str, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    if url.startswith(UNIX):
        path = url[len(UNIX):]
        if not path:
            raise CliFailure(UNIX_NEEDS_PATH)
        return httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://localhost", headers=headers,
                            timeout=TIMEOUT_S)
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_S)


def post(url: str, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to ``path``; the 200 body, or ``<path> failed (<code>): <error text>``."""
    with _client(url, token) as client:
        try:
            resp = client.post(path, json=body)
        except httpx.HTTPError as exc:
            # httpx's text names the address, never the request's body.
            raise CliFailure(f"{path} failed: cannot reach the daemon at {url}: {exc}") from None
    if resp.status_code != 200:
        raise CliFailure(f"{path} failed ({resp.status_code}): {_error_text(resp)}")
    answer: dict[str, Any] = resp.json()
    return answer


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return resp.text.strip()
