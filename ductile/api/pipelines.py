"""``POST /pipeline/{name}``: trigger a pipeline, asynchronously or synchronously (pipelines.md §9)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, QueryParameter
from msgspec import UNSET

from ductile.api.auth import scopes
from ductile.api.body import json_object, payload_of
from ductile.api.context import Facade
from ductile.api.errors import ApiError, internal
from ductile.api.handlers import post
from ductile.api.schemas import PAYLOAD_BODY, body_of, errors
from ductile.app.facade import Ductile
from ductile.commands.errors import PayloadTooLarge, PipelineInputRefused
from ductile.pipelines.graph import Pipeline
from ductile.projections.analytics_queries import TreeNode
from ductile.vocabulary import FAILURES, JobStatus


class PipelineQueued(msgspec.Struct, kw_only=True):
    """202 of an asynchronous trigger (pipelines.md §9.5)."""

    job_id: str
    job_ids: list[str]
    status: JobStatus
    plugin: str
    command: str


class PipelineStillRunning(msgspec.Struct, kw_only=True):
    """202 of a synchronous trigger that outlived its timeout (pipelines.md §9.6)."""

    job_id: str
    status: JobStatus
    timeout_exceeded: bool
    message: str


class PipelineFinished(msgspec.Struct, kw_only=True):
    """200 of a synchronous trigger whose tree ended (pipelines.md §9.6)."""

    job_id: str
    status: JobStatus
    duration_ms: int
    result: Any = UNSET
    tree: list[TreeNode]


# What the route answers: 202 (queued, or still running), 200 (finished); the baggage 413 is a
# dict, its extra keys allowed by ErrorBody's open schema.
Answer = Response[PipelineQueued | PipelineStillRunning | PipelineFinished | dict[str, Any]]
Accepted = PipelineQueued | PipelineStillRunning

PIPELINE_RESPONSES = {
    **errors(400, 401, 403, 404, 413, 500, 503, e413="request body too large, or the baggage over its limit"),
    200: ResponseSpec(PipelineFinished, description="synchronous pipeline finished", generate_examples=False),
}
Async = Annotated[str | None, QueryParameter(name="async", description="true: answer 202 at once")]


@post("/pipeline/{name:str}", status_code=202, guards=[scopes("plugin:rw")], responses=PIPELINE_RESPONSES,
      operation_class=body_of(PAYLOAD_BODY), response_description="pipeline queued")
async def trigger_pipeline(ductile: Facade, request: Request[Any, Any, Any], name: FromPath[str],
                           async_: Async = None) -> Response[Accepted]:
    """Trigger a pipeline."""
    return await _trigger(ductile, request, name, async_)


def pipeline_routes(names: list[str]) -> list[HTTPRouteHandler]:
    """One ``POST /pipeline/<n>`` per compiled pipeline, so that the document names each (api.md §4.2)."""
    return [_pipeline_route(name) for name in sorted(names)]


def _pipeline_route(name: str) -> HTTPRouteHandler:
    async def trigger_named(ductile: Facade, request: Request[Any, Any, Any],
                            async_: Async = None) -> Response[Accepted]:
        return await _trigger(ductile, request, name, async_)

    return post(f"/pipeline/{name}", status_code=202, guards=[scopes("plugin:rw")], responses=PIPELINE_RESPONSES,
                operation_class=body_of(PAYLOAD_BODY), response_description="pipeline queued",
                operation_id=f"pipeline__{name}", summary=f"Trigger pipeline {name}", tags=["pipelines"],
                name=f"pipeline:{name}")(trigger_named)


async def _trigger(ductile: Ductile, request: Request[Any, Any, Any], name: str,
                   async_: str | None) -> Answer:
    pipeline = ductile.pipelines.get(name)
    if pipeline is None or ductile.router is None:
        raise ApiError(404, "pipeline not found")
    payload = payload_of(await json_object(request))
    force_async = (async_ or "").lower() == "true"
    synchronous = pipeline.synchronous and not force_async
    if synchronous and len(pipeline.entries) != 1:
        raise ApiError(400, "synchronous pipeline trigger requires exactly one entry dispatch; "
                            "use ?async=true for fan-out entry pipelines")
    semaphore: asyncio.Semaphore = request.app.state.sync_slots
    if synchronous:
        if semaphore.locked():
            raise ApiError(503, "too many concurrent synchronous requests")
        await semaphore.acquire()  # never blocks here: no await between the check and the take
    try:
        return await _run(ductile, name, payload, synchronous, pipeline)
    finally:
        if synchronous:
            semaphore.release()


async def _run(
    ductile: Ductile, name: str, payload: dict[str, Any], synchronous: bool, pipeline: Pipeline
) -> Answer:
    started = time.monotonic()
    try:
        job_ids = await ductile.pipelines.trigger(name, payload)
    except PipelineInputRefused as exc:
        raise ApiError(400, str(exc)) from None
    except PayloadTooLarge as exc:
        return Response({"error": str(exc), "bytes_actual": exc.size, "bytes_limit": exc.limit}, status_code=413)
    except Exception as exc:
        raise internal("failed to enqueue job", exc, pipeline=name) from None
    if not job_ids:
        raise ApiError(500, "failed to enqueue job")
    if not synchronous:
        return Response(PipelineQueued(job_id=job_ids[0], job_ids=job_ids, status=JobStatus.QUEUED, plugin="pipeline",
                                       command=name), status_code=202)
    timeout = min(pipeline.timeout, ductile.config.api.max_sync_timeout)
    tree = await ductile.jobs.wait_for_tree(job_ids[0], started + timeout)
    if tree is None:
        return Response(PipelineStillRunning(job_id=job_ids[0], status=JobStatus.RUNNING, timeout_exceeded=True,
                                             message="Pipeline still running after timeout."), status_code=202)
    return Response(_summary(job_ids[0], tree, pipeline.terminals, started), status_code=200)


def _summary(root: str, tree: list[TreeNode], terminals: list[str], started: float) -> PipelineFinished:
    by_completion = sorted((n for n in tree if n.completed_at), key=lambda n: str(n.completed_at))
    failed = [n for n in by_completion if n.status in FAILURES]
    status = failed[0].status if failed else JobStatus.SUCCEEDED
    # pipelines.md §9: the last-completed job on a terminal node, whatever its status; else the root.
    on_terminals = [n for n in by_completion if n.step_id in terminals]
    source = on_terminals[-1] if on_terminals else next((n for n in tree if n.job_id == root), None)
    result = UNSET if source is None else source.result
    if isinstance(result, dict) and "result" in result:
        result = result["result"]
    return PipelineFinished(job_id=root, status=status, duration_ms=int((time.monotonic() - started) * 1000),
                            result=result, tree=tree)
