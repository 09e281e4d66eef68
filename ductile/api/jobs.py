"""Job routes: ``/job/{id}``, ``/job/{id}/tree``, ``/jobs``, ``/job-logs``. Without
``jobs:result:ro`` the caller sees no ``result``, ``last_error`` or ``stderr``."""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import FromPath, QueryParameter

from ductile.api.auth import scopes
from ductile.api.context import CallerDep, Facade
from ductile.api.errors import ApiError, forbidden
from ductile.api.handlers import get
from ductile.api.schemas import errors, query_schema
from ductile.projections.analytics_queries import TreeNode
from ductile.projections.job_queries import DEFAULT_LIMIT, MAX_LIMIT, STATUS_ALIASES, Job, JobLogPage, JobPage
from ductile.vocabulary import JobStatus

# An int, not int | None: Litestar would read ``limit=null`` as absent, where api.md refuses it.
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="at most this many, newest first")]
# Filters stay strings: the status filter takes case-insensitive aliases (pending, ok, error) and
# the flags are "true" or anything else, as api.md §4.3 reads them.
Filter = Annotated[str | None, QueryParameter(required=False)]
# "" is no filter; the aliases of job_queries are accepted in any letter case.
StatusFilter = Annotated[str | None, QueryParameter(required=False, schema_extra=query_schema(Schema(
    type=OpenAPIType.STRING, enum=["", *JobStatus, *STATUS_ALIASES])))]
# An RFC 3339 bound, or "" for none.
TIMESTAMP = query_schema(Schema(any_of=[Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
                                         Schema(type=OpenAPIType.STRING, max_length=0)]))


@get("/job/{job_id:str}", guards=[scopes("jobs:status:ro", "jobs:rw")], responses=errors(400, 401, 403, 404))
async def get_job(ductile: Facade, caller: CallerDep, job_id: FromPath[str]) -> Job:
    job = await ductile.jobs.get(job_id, with_result=caller.has("jobs:result:ro"))
    if job is None:
        raise ApiError(404, "job not found")
    return job


@get("/jobs", guards=[scopes("jobs:status:ro", "jobs:rw")], responses=errors(400, 401, 403))
async def list_jobs(ductile: Facade, plugin: Filter = None, command: Filter = None, status: StatusFilter = None,
                    submitted_by: Filter = None, limit: Limit = DEFAULT_LIMIT) -> JobPage:
    return await ductile.jobs.list(plugin=plugin, command=command, status=status, submitted_by=submitted_by,
                                   limit=limit)


@get("/job-logs", guards=[scopes("jobs:logs:ro", "jobs:rw")], responses=errors(400, 401, 403))
async def job_logs(
    ductile: Facade, caller: CallerDep, job_id: Filter = None, plugin: Filter = None, command: Filter = None,
    status: StatusFilter = None, submitted_by: Filter = None, from_: Annotated[str | None, QueryParameter(name="from", required=False, schema_extra=TIMESTAMP)] = None,
    to: Annotated[str | None, QueryParameter(required=False, schema_extra=TIMESTAMP)] = None, text: Annotated[str | None, QueryParameter(name="query")] = None, limit: Limit = DEFAULT_LIMIT, include_result: Filter = None,
) -> JobLogPage:
    with_result = caller.has("jobs:result:ro")
    if text and not with_result:
        raise forbidden()
    return await ductile.jobs.logs(
        job_id=job_id, plugin=plugin, command=command, status=status, submitted_by=submitted_by, from_=from_, to=to,
        query=text, limit=limit, include_result=(include_result or "").lower() == "true", with_result=with_result,
    )


@get("/job/{job_id:str}/tree", guards=[scopes("jobs:tree:ro", "jobs:rw")], responses=errors(400, 401, 403, 404))
async def job_tree(ductile: Facade, caller: CallerDep, job_id: FromPath[str]) -> list[TreeNode]:
    tree = await ductile.jobs.tree(job_id, with_result=caller.has("jobs:result:ro"))
    if tree is None:
        raise ApiError(404, "job not found")
    return tree
