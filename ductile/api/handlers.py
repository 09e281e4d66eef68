"""The route decorators of the API: ``get`` and ``post`` as Litestar's, except that a route's
guards are handed the route handler itself rather than a copy.

Litestar gives every guard ``copy(handler)`` on every request, so that a guard may change the
handler it is given without the change outliving the request. Our guards (``auth.scopes``, the
vault's admin token) never look at the handler, and the copy (a route handler has some seventy
slots, each set again) was the largest single cost left on the enqueue path: about an eighth of
the event loop's time per request (docs/performance-history.md, "The API path").

A subclass of ``HTTPRouteHandler`` (Litestar's own extension point; subclassing its semantic
``get``/``post`` classes is deprecated), built by two functions with the decorators' signature.
"""

from __future__ import annotations

from typing import Any

from litestar import HttpMethod
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler


class GuardedRouteHandler(HTTPRouteHandler):
    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        # Litestar's own loop (BaseRouteHandler.authorize_connection) less the per-guard copy.
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]


def get(path: str | None = None, **options: Any) -> GuardedRouteHandler:
    """``litestar.get``: ``@get("/path", guards=[...], ...)``."""
    return GuardedRouteHandler(path, http_method=HttpMethod.GET, **options)


def post(path: str | None = None, **options: Any) -> GuardedRouteHandler:
    """``litestar.post``: ``@post("/path", guards=[...], ...)``."""
    return GuardedRouteHandler(path, http_method=HttpMethod.POST, **options)


__all__ = ["GuardedRouteHandler", "get", "post"]
