"""Scheduler and breaker routes: ``GET /scheduler/jobs``, ``POST /system/breaker/{plugin}/reset``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath

from ductile.api.auth import scopes
from ductile.api.body import json_object
from ductile.api.context import Facade
from ductile.api.errors import ApiError, internal
from ductile.api.handlers import get, post
from ductile.api.schemas import body_of, errors
from ductile.projections.schedule_queries import ScheduleList
from ductile.vocabulary import CircuitState


class BreakerReset(msgspec.Struct):
    plugin: str
    command: str
    state: CircuitState


# api.md §3: `{command?}`, default `poll`.
BREAKER_BODY = Schema(type=OpenAPIType.OBJECT, properties={"command": Schema(type=OpenAPIType.STRING)})


@get("/scheduler/jobs", guards=[scopes("jobs:status:ro", "jobs:rw")], responses=errors(401, 403, 500))
async def scheduler_jobs(ductile: Facade) -> ScheduleList:
    try:
        return await ductile.schedules.list()
    except Exception as exc:
        raise internal("failed to read schedules", exc) from None


@post("/system/breaker/{plugin:str}/reset", status_code=200, guards=[scopes("system:rw")],
      responses=errors(400, 401, 403, 404), operation_class=body_of(BREAKER_BODY))
async def reset_breaker(ductile: Facade, request: Request[Any, Any, Any], plugin: FromPath[str]) -> BreakerReset:
    if ductile.plugins.get(plugin) is None:
        raise ApiError(404, "plugin not found")
    body = await json_object(request)
    command = body.get("command")
    if command is None or command == "":
        command = "poll"  # api.md §3: `{command?}`, default `poll`
    elif not isinstance(command, str):
        # Checked before any default: `false`, `0`, `[]` are refused, not read as "absent".
        raise ApiError(400, "command must be a string")
    await ductile.schedules.reset_breaker(plugin, command)
    return BreakerReset(plugin=plugin, command=command, state=CircuitState.CLOSED)
