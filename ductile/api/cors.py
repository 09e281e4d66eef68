"""CORS from ``api.allowed_origins`` (api.md §1), as a plain ASGI wrapper.

It wraps the whole application (not one route), so unknown routes and error responses get the
same headers, and a preflight is answered before routing. A request from an origin that is not
allowed is passed through untouched: the browser, not the gateway, enforces CORS.

Hand code rather than Litestar's ``CORSConfig``, because that cannot express api.md §1:
- its credentials and expose-headers are one setting for every origin, while the spec gives them
  to an exact match only and answers a listed ``*`` with a bare wildcard;
- its preflight lists the methods sorted and merges its own default headers into
  ``Access-Control-Allow-Headers``, so neither header could carry the spec's exact value;
- its preflight is handled by routing, while the spec answers a preflight for any path (even an
  unknown one) before routing, and a disallowed origin's preflight goes on as an ordinary request.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
ALLOW_HEADERS = b"Accept, Authorization, Content-Type, X-CSRF-Token"
MAX_AGE = b"300"


class Cors:
    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        origins = [o.strip() for o in allowed_origins if o and o.strip()]
        self.wildcard = "*" in origins
        self.exact = frozenset(o for o in origins if o != "*")

    def headers_for(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if not origin:
            return []
        if origin in self.exact:
            return [
                (b"vary", b"Origin"),
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", b"Link"),
            ]
        if self.wildcard:
            return [(b"access-control-allow-origin", b"*")]
        return []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = None
        preflight = False
        for k, v in scope.get("headers", []):
            if k == b"origin":
                origin = v.decode("latin-1")
            elif k == b"access-control-request-method":
                preflight = True
        extra = self.headers_for(origin)
        if not extra:
            await self.app(scope, receive, send)
            return
        if preflight and scope.get("method") == "OPTIONS":
            await send({
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    *extra,
                    (b"access-control-allow-methods", ALLOW_METHODS),
                    (b"access-control-allow-headers", ALLOW_HEADERS),
                    (b"access-control-max-age", MAX_AGE),
                ],
            })
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _merge(list(message.get("headers", [])), extra)
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _merge(headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Set the CORS headers, replacing any the app set; ``Vary`` is extended, not replaced."""
    names = {name for name, _ in extra}
    vary = [v for k, v in headers if k.lower() == b"vary"]
    kept = [(k, v) for k, v in headers if k.lower() not in names]
    out = []
    for name, value in extra:
        if name == b"vary" and vary:
            parts = [p.strip() for v in vary for p in v.split(b",") if p.strip()]
            if b"origin" not in {p.lower() for p in parts}:
                parts.append(value)
            value = b", ".join(parts)
        out.append((name, value))
    return [*kept, *out]
