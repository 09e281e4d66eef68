"""Job routes: ``/job/{id}``, ``/job/{id}/tree``, ``/jobs``, ``/job-logs``. Without
``jobs:result:ro`` the caller sees no ``result``, ``last_error`` or ``stderr``."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from ductile.api.auth import require
from ductile.api.context import services_of
from ductile.api.errors import ApiError, forbidden
from ductile.projections import analytics_queries, job_queries
from ductile.projections.job_queries import QueryError


def _limit(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "limit must be a positive integer") from None


@get("/job/{job_id:str}")
async def get_job(request: Request[Any, Any, Any], job_id: str) -> dict[str, Any]:
    caller = require(request.app.state.tokens, request.headers.get("authorization"), "jobs:status:ro", "jobs:rw")
    with_result = caller.has("jobs:result:ro")
    job = await services_of(request).read(lambda c: job_queries.get_job(c, job_id, with_result=with_result))
    if job is None:
        raise ApiError(404, "job not found")
    return job


@get("/jobs")
async def list_jobs(request: Request[Any, Any, Any]) -> dict[str, Any]:
    require(request.app.state.tokens, request.headers.get("authorization"), "jobs:status:ro", "jobs:rw")
    q = request.query_params
    limit = _limit(q.get("limit"))
    try:
        return await services_of(request).read(
            lambda c: job_queries.list_jobs(c, plugin=q.get("plugin"), command=q.get("command"), status=q.get("status"),
                                            submitted_by=q.get("submitted_by"), limit=limit)
        )
    except QueryError as exc:
        raise ApiError(400, str(exc)) from None


@get("/job-logs")
async def job_logs(request: Request[Any, Any, Any]) -> dict[str, Any]:
    caller = require(request.app.state.tokens, request.headers.get("authorization"), "jobs:logs:ro", "jobs:rw")
    q = request.query_params
    with_result = caller.has("jobs:result:ro")
    if q.get("query") and not with_result:
        raise forbidden()
    limit = _limit(q.get("limit"))
    include = (q.get("include_result") or "").lower() == "true"
    try:
        return await services_of(request).read(
            lambda c: job_queries.job_logs(
                c, job_id=q.get("job_id"), plugin=q.get("plugin"), command=q.get("command"), status=q.get("status"),
                submitted_by=q.get("submitted_by"), from_=q.get("from"), to=q.get("to"), query=q.get("query"),
                limit=limit, include_result=include, with_result=with_result,
            )
        )
    except QueryError as exc:
        raise ApiError(400, str(exc)) from None


@get("/job/{job_id:str}/tree")
async def job_tree(request: Request[Any, Any, Any], job_id: str) -> list[dict[str, Any]]:
    caller = require(request.app.state.tokens, request.headers.get("authorization"), "jobs:tree:ro", "jobs:rw")
    with_result = caller.has("jobs:result:ro")
    tree = await services_of(request).read(
        lambda c: analytics_queries.job_tree(c, job_id, with_result=with_result)
    )
    if tree is None:
        raise ApiError(404, "job not found")
    return tree
