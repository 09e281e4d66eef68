"""Plugin routes: the catalog and the direct trigger ``POST /plugin/{plugin}/{command}``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath

from ductile.api.auth import scopes
from ductile.api.body import json_object, payload_of
from ductile.api.context import CallerDep, Facade
from ductile.api.errors import ApiError, forbidden, internal
from ductile.vocabulary import JobStatus


class PluginSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    version: str
    description: str | None = None
    commands: list[str]


class PluginList(msgspec.Struct):
    plugins: list[PluginSummary]


class TriggerAccepted(msgspec.Struct):
    job_id: str
    status: JobStatus
    plugin: str
    command: str


@get("/plugins", guards=[scopes()])
async def list_plugins(ductile: Facade) -> PluginList:
    catalog = ductile.catalog.plugins
    return PluginList([
        PluginSummary(name=name, version=p.manifest.version, description=p.manifest.description or None,
                      commands=[c.name for c in p.manifest.commands])
        for name, p in sorted(catalog.items())
    ])


@post("/plugin/{plugin:str}/{command:str}", status_code=202, guards=[scopes("plugin:invoke:ro", "plugin:rw")])
async def trigger(ductile: Facade, caller: CallerDep, request: Request[Any, Any, Any],
                  plugin: FromPath[str],
                  command: FromPath[str]) -> TriggerAccepted:
    loaded = ductile.plugins.get(plugin)
    if loaded is None:
        raise ApiError(400, "plugin not found")
    spec = loaded.command(command)
    if spec is None:
        raise ApiError(400, "command not supported by plugin")
    if spec.type != "read" and not caller.has("plugin:rw"):
        raise forbidden()
    payload = payload_of(await json_object(request))
    if command == "handle":
        payload = {"type": "api.trigger", "payload": payload}
    try:
        outcome = await ductile.jobs.enqueue(plugin, command, payload, "api", direct=True)
    except Exception as exc:
        raise internal("failed to enqueue job", exc, plugin=plugin, command=command) from None
    return TriggerAccepted(job_id=outcome.job_id or "", status=JobStatus.QUEUED, plugin=plugin, command=command)
