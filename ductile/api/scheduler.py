"""Scheduler and breaker routes: ``GET /scheduler/jobs``, ``POST /system/breaker/{plugin}/reset``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from ductile.api.auth import require
from ductile.api.body import json_object
from ductile.api.context import services_of
from ductile.api.errors import ApiError, internal
from ductile.app import schedules
from ductile.projections import schedule_queries
from ductile.vocabulary import CircuitState


@get("/scheduler/jobs")
async def scheduler_jobs(request: Request[Any, Any, Any]) -> dict[str, Any]:
    require(request.app.state.tokens, request.headers.get("authorization"), "jobs:status:ro", "jobs:rw")
    svc = services_of(request)
    try:
        return await svc.read(lambda c: schedule_queries.scheduler_jobs(c, svc.schedule_specs))
    except Exception as exc:
        raise internal("failed to read schedules", exc) from None


@post("/system/breaker/{plugin:str}/reset", status_code=200)
async def reset_breaker(request: Request[Any, Any, Any], plugin: str) -> Response[dict[str, Any]]:
    require(request.app.state.tokens, request.headers.get("authorization"), "system:rw")
    svc = services_of(request)
    if svc.catalog.get(plugin) is None:
        raise ApiError(404, "plugin not found")
    body = await json_object(request)
    command = body.get("command")
    if command is None or command == "":
        command = "poll"  # api.md §3: `{command?}`, default `poll`
    elif not isinstance(command, str):
        # Checked before any default: `false`, `0`, `[]` are refused, not read as "absent".
        raise ApiError(400, "command must be a string")
    await svc.events.submit(lambda tx: schedules.reset_breaker(tx, plugin, command))
    return Response({"plugin": plugin, "command": command, "state": CircuitState.CLOSED}, status_code=200)
