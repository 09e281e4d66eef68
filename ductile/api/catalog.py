"""Discovery routes: ``GET /plugin/{plugin}``, ``/plugin/{plugin}/openapi.json``, ``/skills`` and
``/.well-known/ai-plugin.json`` (api.md §3, §4.1, §4.2)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.params import FromPath

from ductile import __version__
from ductile.api.auth import scopes
from ductile.api.context import Facade
from ductile.api.errors import ApiError
from ductile.app.facade import Ductile
from ductile.runtime.catalog import LoadedPlugin
from ductile.runtime.skills import skills as skills_of

BEARER = {"BearerAuth": {"type": "http", "scheme": "bearer"}}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
ACCEPTED_SCHEMA = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued"]},
        "plugin": {"type": "string"},
        "command": {"type": "string"},
    },
    "required": ["job_id", "status", "plugin", "command"],
}
_TRIGGER_ERRORS = {
    "400": "plugin not found, command not supported, invalid JSON body or payload",
    "401": "missing or invalid bearer token",
    "403": "insufficient scope",
    "413": "request body too large",
    "500": "failed to enqueue job",
}


def _plugin_or_404(ductile: Ductile, plugin: str) -> LoadedPlugin:
    loaded = ductile.plugins.get(plugin)
    if loaded is None:
        raise ApiError(404, "plugin not found")
    return loaded


def describe(loaded: LoadedPlugin) -> dict[str, Any]:
    m = loaded.manifest
    body: dict[str, Any] = {"name": loaded.name, "version": m.version}
    if m.description:
        body["description"] = m.description
    body["protocol"] = m.protocol
    body["concurrency_safe"] = m.concurrency_safe
    commands = []
    for c in m.commands:
        entry: dict[str, Any] = {"name": c.name, "type": c.type}
        if c.description:
            entry["description"] = c.description
        for key in ("idempotent", "retry_safe", "input_schema", "output_schema"):
            value = getattr(c, key)
            if value is not None:
                entry[key] = value
        commands.append(entry)
    body["commands"] = commands
    return body


def plugin_paths(loaded: LoadedPlugin) -> dict[str, Any]:
    """The ``POST /plugin/<p>/<c>`` path items of one plugin (api.md §4.2)."""
    paths: dict[str, Any] = {}
    for c in loaded.manifest.commands:
        responses: dict[str, Any] = {
            "202": {"description": "job queued",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TriggerAccepted"}}}},
        }
        for status, text in _TRIGGER_ERRORS.items():
            responses[status] = {"description": text,
                                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        operation: dict[str, Any] = {
            "operationId": f"{loaded.name}__{c.name}",
            "summary": c.description or f"{loaded.name}: {c.name}",
            "tags": [loaded.name],
            "security": [{"BearerAuth": []}],
            "responses": responses,
        }
        if c.input_schema is not None:
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"payload": c.input_schema},
                }}},
            }
        paths[f"/plugin/{loaded.name}/{c.name}"] = {"post": operation}
    return paths


def openapi_document(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ductile Gateway", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": BEARER,
            "schemas": {"Error": ERROR_SCHEMA, "TriggerAccepted": ACCEPTED_SCHEMA},
        },
    }


@get("/plugin/{plugin:str}", guards=[scopes("plugin:catalog:ro", "plugin:rw")])
async def get_plugin(ductile: Facade, plugin: FromPath[str]) -> dict[str, Any]:
    return describe(_plugin_or_404(ductile, plugin))


@get("/plugin/{plugin:str}/openapi.json", guards=[scopes()])
async def plugin_openapi(ductile: Facade, plugin: FromPath[str]) -> dict[str, Any]:
    return openapi_document(plugin_paths(_plugin_or_404(ductile, plugin)))


@get("/skills", guards=[scopes()])
async def skills(ductile: Facade) -> dict[str, Any]:
    # Pipeline entries (pipeline.<n>) join once pipelines are compiled.
    return {"skills": skills_of(ductile.catalog, ductile.config.pipelines)}


@get("/.well-known/ai-plugin.json", guards=[scopes()])
async def ai_plugin() -> dict[str, Any]:
    return {
        "schema_version": "v1",
        "name_for_human": "Ductile Gateway",
        "name_for_model": "ductile",
        "description_for_human": "Self-hosted automation gateway: trigger plugins and pipelines, inspect jobs.",
        "description_for_model": (
            "Discover plugins with GET /skills or GET /openapi.json (one plugin: /plugin/{name}/openapi.json). "
            "Invoke a command with POST /plugin/{name}/{command} and a JSON body {\"payload\": {...}}; "
            "the answer carries a job_id. Poll GET /job/{job_id} until its status is terminal."
        ),
        "auth": {"type": "bearer"},
        "api": {"type": "openapi", "url": "/openapi.json"},
    }
