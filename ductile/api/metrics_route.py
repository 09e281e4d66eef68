"""``GET /metrics``: Prometheus text format 0.0.4 (api.md §6, a Ductile extension)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from ductile.api.auth import require
from ductile.api.context import services_of
from ductile.api.schemas import errors
from ductile.runtime.metrics import CONTENT_TYPE, Metrics


@get("/metrics", responses=errors(401, 403), media_type=CONTENT_TYPE)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    require(request.app.state.tokens, request.headers.get("authorization"), "system:ro", "system:rw")
    svc = services_of(request)
    registry: Metrics = request.app.state.metrics
    head, subscribers, uptime = svc.events.head, svc.sse_subscribers, svc.uptime_seconds()
    text = await svc.read(lambda c: registry.render(c, head, subscribers, uptime))
    # An explicit header: Litestar would append a second charset to a text/* media type.
    return Response(text.encode(), headers={"content-type": CONTENT_TYPE}, status_code=200)
