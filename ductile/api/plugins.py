"""Plugin routes: the catalog and the direct trigger ``POST /plugin/{plugin}/{command}``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from ductile.api.auth import require
from ductile.api.body import json_object, payload_of
from ductile.api.context import services_of
from ductile.api.errors import ApiError, forbidden, internal
from ductile.vocabulary import JobStatus


@get("/plugins")
async def list_plugins(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = services_of(request)
    require(request.app.state.tokens, request.headers.get("authorization"))
    plugins = []
    for name in sorted(svc.catalog.plugins):
        p = svc.catalog.plugins[name]
        entry: dict[str, Any] = {"name": name, "version": p.manifest.version}
        if p.manifest.description:
            entry["description"] = p.manifest.description
        entry["commands"] = [c.name for c in p.manifest.commands]
        plugins.append(entry)
    return {"plugins": plugins}


@post("/plugin/{plugin:str}/{command:str}", status_code=202)
async def trigger(request: Request[Any, Any, Any], plugin: str, command: str) -> Response[dict[str, Any]]:
    svc = services_of(request)
    caller = require(request.app.state.tokens, request.headers.get("authorization"), "plugin:invoke:ro", "plugin:rw")
    loaded = svc.catalog.get(plugin)
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
        outcome = await svc.enqueue(plugin, command, payload, "api", direct=True)
    except Exception as exc:
        raise internal("failed to enqueue job", exc, plugin=plugin, command=command) from None
    return Response(
        {"job_id": outcome.job_id, "status": JobStatus.QUEUED, "plugin": plugin, "command": command}, status_code=202
    )
