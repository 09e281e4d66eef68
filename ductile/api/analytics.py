"""Analytics routes: ``/analytics/summary``, ``/analytics/queue`` and ``/stopwatch/{plugin}``
(api.md §4.5, §4.6). All are read from the job read models on a read connection."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from ductile.api.auth import require
from ductile.api.context import services_of
from ductile.api.errors import ApiError
from ductile.events.timefmt import now_ns
from ductile.projections import analytics_queries

JOB_STATUS_SCOPES = ("jobs:status:ro", "jobs:rw")


@get("/analytics/summary")
async def analytics_summary(request: Request[Any, Any, Any]) -> dict[str, Any]:
    require(request.app.state.tokens, request.headers.get("authorization"), *JOB_STATUS_SCOPES)
    now = now_ns()
    return await services_of(request).read(lambda c: analytics_queries.summary(c, now))


@get("/analytics/queue")
async def analytics_queue(request: Request[Any, Any, Any]) -> dict[str, Any]:
    require(request.app.state.tokens, request.headers.get("authorization"), *JOB_STATUS_SCOPES)
    svc = services_of(request)
    now = now_ns()
    workers = svc.config.service.max_workers
    return await svc.read(lambda c: analytics_queries.queue_analytics(c, now, workers))


@get("/stopwatch/{plugin:str}")
async def stopwatch(request: Request[Any, Any, Any], plugin: str) -> dict[str, Any]:
    caller = require(request.app.state.tokens, request.headers.get("authorization"), *JOB_STATUS_SCOPES)
    window = request.query_params.get("window") or "1h"
    if window not in analytics_queries.WINDOWS:
        raise ApiError(400, "invalid window (use 5m, 1h, or 24h)")
    svc = services_of(request)
    if svc.catalog.get(plugin) is None:
        raise ApiError(404, "plugin not found")
    subs: bool | None = None
    if caller.has("jobs:result:ro"):
        subs = (request.query_params.get("include_subs") or "").lower() == "true"
    now = now_ns()
    return await svc.read(lambda c: analytics_queries.stopwatch(c, plugin, window, now, subs=subs))
