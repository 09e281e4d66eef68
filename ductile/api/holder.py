"""An ASGI app whose target can be swapped while uvicorn serves it (config.md §8, step 5).

uvicorn keeps its listening socket and calls the holder for every request; a reload points the
holder at the new app. A request is served whole by the app it started on, so an SSE stream that
began before a reload stays connected, and no request is ever refused for the swap.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send


class AppHolder:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def swap(self, app: ASGIApp) -> None:
        self.app = app  # one reference assignment: the next request sees the new app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
