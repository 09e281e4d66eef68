"""Analytics routes: ``/analytics/summary``, ``/analytics/queue`` and ``/stopwatch/{plugin}``
(api.md §4.5, §4.6). All are read from the job read models on a read connection."""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath, FromQuery, QueryParameter

from ductile.api.auth import scopes
from ductile.api.context import CallerDep, Facade
from ductile.api.errors import ApiError
from ductile.api.handlers import get
from ductile.api.schemas import errors, query_schema
from ductile.events.timefmt import now_ns
from ductile.projections import analytics_queries
from ductile.projections.analytics_queries import QueueReport, Stopwatch, Summary

JOB_STATUS = scopes("jobs:status:ro", "jobs:rw")


@get("/analytics/summary", guards=[JOB_STATUS], responses=errors(401, 403))
async def analytics_summary(ductile: Facade) -> Summary:
    return await ductile.analytics.summary(now_ns())


@get("/analytics/queue", guards=[JOB_STATUS], responses=errors(401, 403))
async def analytics_queue(ductile: Facade) -> QueueReport:
    return await ductile.analytics.queue(now_ns())


@get("/stopwatch/{plugin:str}", guards=[JOB_STATUS], responses=errors(400, 401, 403, 404))
async def stopwatch(ductile: Facade, caller: CallerDep, plugin: FromPath[str],
                    window: Annotated[str | None, QueryParameter(required=False, schema_extra=query_schema(Schema(
                        type=OpenAPIType.STRING, enum=list(analytics_queries.WINDOWS))))] = None,
                    include_subs: FromQuery[str | None] = None) -> Stopwatch:
    window = window or "1h"
    if window not in analytics_queries.WINDOWS:
        raise ApiError(400, "invalid window (use 5m, 1h, or 24h)")
    subs: bool | None = None
    if caller.has("jobs:result:ro"):
        subs = (include_subs or "").lower() == "true"
    return await ductile.analytics.stopwatch(plugin, window, now_ns(), subs=subs)
