"""Plugin routes: the catalog and the direct trigger ``POST /plugin/{plugin}/{command}``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIType, Operation, Schema
from litestar.params import FromPath

from ductile.api import idempotency
from ductile.api.auth import caller_of, scopes
from ductile.api.body import json_object, payload_of
from ductile.api.context import Facade, facade_of
from ductile.api.errors import ApiError, forbidden, internal
from ductile.api.handlers import get, post
from ductile.api.schemas import PAYLOAD_BODY, RawSchema, body_of, errors
from ductile.runtime.catalog import Catalog
from ductile.vocabulary import JobStatus


class PluginSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    version: str
    description: str | None = None
    commands: list[str]


class PluginList(msgspec.Struct):
    plugins: list[PluginSummary]


class TriggerAccepted(msgspec.Struct, omit_defaults=True):
    job_id: str
    status: JobStatus
    plugin: str
    command: str
    deduped: bool = False  # present (true) only when an Idempotency-Key replays an existing job


@get("/plugins", guards=[scopes()], responses=errors(401))
async def list_plugins(ductile: Facade) -> PluginList:
    catalog = ductile.catalog.plugins
    return PluginList([
        PluginSummary(name=name, version=p.manifest.version, description=p.manifest.description or None,
                      commands=[c.name for c in p.manifest.commands])
        for name, p in sorted(catalog.items())
    ])


TRIGGER_ERRORS = errors(400, 401, 403, 413, 500,
                        e400="plugin not found, command not supported, invalid JSON body or payload",
                        e500="failed to enqueue job")
TRIGGER_SCOPES = ("plugin:invoke:ro", "plugin:rw")


@post("/plugin/{plugin:str}/{command:str}", status_code=202, guards=[scopes(*TRIGGER_SCOPES)],
      responses=TRIGGER_ERRORS, operation_class=body_of(PAYLOAD_BODY), response_description="job queued",
      response_headers=idempotency.RESPONSE_HEADERS)
async def trigger(request: Request[Any, Any, Any], plugin: FromPath[str], command: FromPath[str],
                  idempotency_key: idempotency.Key = None) -> Response[TriggerAccepted]:
    """Trigger a plugin command."""
    return await _trigger(request, plugin, command, idempotency_key)


def command_routes(catalog: Catalog) -> list[HTTPRouteHandler]:
    """One ``POST /plugin/<p>/<c>`` per loaded command, so that the document names each (api.md
    §4.2); each answers exactly as the generic trigger does."""
    routes = []
    for name, loaded in sorted(catalog.plugins.items()):
        for spec in loaded.manifest.commands:
            routes.append(_command_route(name, spec.name, spec.description or f"{name}: {spec.name}",
                                         spec.input_schema))
    return routes


def _command_route(plugin: str, command: str, summary: str, input_schema: dict[str, Any] | None) -> HTTPRouteHandler:
    operation = body_of(Schema(type=OpenAPIType.OBJECT, properties={"payload": RawSchema(document=input_schema)})) \
        if input_schema is not None else Operation

    async def trigger_command(request: Request[Any, Any, Any],
                              idempotency_key: idempotency.Key = None) -> Response[TriggerAccepted]:
        return await _trigger(request, plugin, command, idempotency_key)

    return post(f"/plugin/{plugin}/{command}", status_code=202, guards=[scopes(*TRIGGER_SCOPES)],
                responses=TRIGGER_ERRORS, operation_id=f"{plugin}__{command}", summary=summary, tags=[plugin],
                operation_class=operation, response_description="job queued",
                response_headers=idempotency.RESPONSE_HEADERS,
                name=f"trigger:{plugin}:{command}")(trigger_command)


async def _trigger(request: Request[Any, Any, Any], plugin: str, command: str,
                   idempotency_key: str | None) -> Response[TriggerAccepted]:
    # The hot path takes the facade and the caller from the request rather than by dependency
    # injection: two injected values cost an anyio task group per request (docs/performance-history.md).
    ductile, caller = facade_of(request), caller_of(request)
    loaded = ductile.plugins.get(plugin)
    if loaded is None:
        raise ApiError(400, "plugin not found")
    spec = loaded.command(command)
    if spec is None:
        raise ApiError(400, "command not supported by plugin")
    if spec.type != "read" and not caller.has("plugin:rw"):
        raise forbidden()
    payload = payload_of(await json_object(request))
    key = idempotency.checked(idempotency_key)  # api.md §3: after the body's checks
    if command == "handle":
        payload = {"type": "api.trigger", "payload": payload}
    try:
        outcome = await ductile.jobs.enqueue(plugin, command, payload, "api", dedupe_key=key, direct=True)
    except Exception as exc:
        raise internal("failed to enqueue job", exc, plugin=plugin, command=command) from None
    if outcome.deduped and outcome.existing_job_id is not None:
        # Only a key can dedupe here: the request carries no other dedupe_key (api.md §1).
        replay = TriggerAccepted(job_id=outcome.existing_job_id, status=outcome.existing_status or JobStatus.QUEUED,
                                 plugin=plugin, command=command, deduped=True)
        return Response(replay, status_code=202, headers=idempotency.REPLAY_HEADERS)
    return Response(TriggerAccepted(job_id=outcome.job_id or "", status=JobStatus.QUEUED, plugin=plugin,
                                    command=command), status_code=202)
