"""``api.*`` (spec config.md §4.3)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ductile.config.context import BuildContext
from ductile.config.locations import KeyPath, dotted
from ductile.config.model import ApiConfig, TokenEntry
from ductile.config.paths import resolve_path
from ductile.config.schema import ApiSchema, TokenSchema

KNOWN_SCOPES = frozenset(
    {
        "*",
        "plugin:rw",
        "plugin:ro",
        "plugin:catalog:ro",
        "plugin:invoke:ro",
        "jobs:rw",
        "jobs:ro",
        "jobs:status:ro",
        "jobs:tree:ro",
        "jobs:logs:ro",
        "jobs:result:ro",
        "events:rw",
        "events:ro",
        "system:rw",
        "system:ro",
    }
)
MAX_SOCKET_PATH_BYTES = 103  # sun_path is 104 bytes on macOS, including the terminating NUL
LITERAL_TOKEN_WARNING = "literal token in config; move it into the vault with 'ductile config token create'"


def build_api(schema: ApiSchema | None, ctx: BuildContext, state_path: Path) -> ApiConfig:
    given = schema or ApiSchema()
    defaults = ApiConfig()
    enabled = bool(given.enabled)

    listen = defaults.listen if given.listen is None else given.listen
    host, port = parse_listen(listen, ctx, ("api", "listen"))
    if enabled and not _is_loopback(host):
        ctx.warn(
            "api",
            ("api", "listen"),
            f'api.listen "{listen}" is not a loopback address; the API is reachable from other hosts',
        )

    max_concurrent_sync = (
        defaults.max_concurrent_sync if given.max_concurrent_sync is None else given.max_concurrent_sync
    )
    if max_concurrent_sync <= 0:
        raise ctx.error("api.max_concurrent_sync must be > 0", ("api", "max_concurrent_sync"))
    max_sync_timeout = defaults.max_sync_timeout
    if given.max_sync_timeout is not None:
        max_sync_timeout = ctx.duration(given.max_sync_timeout, ("api", "max_sync_timeout"))
        if max_sync_timeout <= 0:
            raise ctx.error("api.max_sync_timeout must be > 0", ("api", "max_sync_timeout"))

    if given.management_socket:
        socket = resolve_path(given.management_socket, ctx.config_dir, ctx.home)
        if len(str(socket).encode()) > MAX_SOCKET_PATH_BYTES:
            raise ctx.error(
                "api.management_socket path too long (max 103 bytes)", ("api", "management_socket")
            )
    else:
        socket = state_path.parent / "vault-admin.sock"

    tokens = given.auth.tokens if given.auth is not None and given.auth.tokens is not None else []
    return ApiConfig(
        enabled=enabled,
        listen=listen,
        host=host,
        port=port,
        max_concurrent_sync=max_concurrent_sync,
        max_sync_timeout=max_sync_timeout,
        allowed_origins=list(given.allowed_origins or []),
        tokens=[_token(index, token, ctx) for index, token in enumerate(tokens)],
        management_socket=socket,
    )


def _token(index: int, given: TokenSchema, ctx: BuildContext) -> TokenEntry:
    path = ("api", "auth", "tokens", index)
    label = f"api.auth.tokens[{index}]"
    if (given.secret_ref is None) == (given.token is None):
        raise ctx.error(f"{label}: set exactly one of secret_ref or token", path)
    if given.token is not None:
        if not given.token.strip():
            raise ctx.error(f"{label}: token is empty", (*path, "token"))
        ctx.warn("api", path, f"{label}: {LITERAL_TOKEN_WARNING}")
    scopes = list(given.scopes or [])
    for position, scope in enumerate(scopes):
        if scope not in KNOWN_SCOPES:
            ctx.warn("api", (*path, "scopes", position), f'unknown scope "{scope}"')
    return TokenEntry(scopes=scopes, token=given.token, secret_ref=given.secret_ref)


def parse_listen(listen: str, ctx: BuildContext, path: KeyPath) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` of a listener (``api.listen``, ``webhooks.listen``)."""
    problem = f'{dotted(path)}: invalid address "{listen}" (expected host:port)'
    if listen.startswith("["):
        host, bracket, rest = listen[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ctx.error(problem, path)
        port_text = rest[1:]
    else:
        host, colon, port_text = listen.rpartition(":")
        if not colon or ":" in host:
            raise ctx.error(problem, path)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ctx.error(problem, path)
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
