"""``GET /metrics``: Prometheus text format 0.0.4 (api.md §6, a Ductile extension)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from ductile.api.auth import scopes
from ductile.api.context import Runtime
from ductile.api.handlers import get
from ductile.api.schemas import errors
from ductile.runtime.metrics import CONTENT_TYPE, Metrics


@get("/metrics", guards=[scopes("system:ro", "system:rw")], responses=errors(401, 403), media_type=CONTENT_TYPE)
async def metrics(request: Request[Any, Any, Any], runtime: Runtime) -> Response[bytes]:
    registry: Metrics = request.app.state.metrics
    head, subscribers, uptime = runtime.events.head, runtime.sse_subscribers, runtime.uptime_seconds()
    text = await runtime.read(lambda c: registry.render(c, head, subscribers, uptime, runtime.last_tick_ns))
    # An explicit header: Litestar would append a second charset to a text/* media type.
    return Response(text.encode(), headers={"content-type": CONTENT_TYPE}, status_code=200)
