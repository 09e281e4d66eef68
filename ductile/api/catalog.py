"""Discovery routes: ``GET /plugin/{plugin}``, ``/plugin/{plugin}/openapi.json``, ``/skills`` and
``/.well-known/ai-plugin.json`` (api.md §3, §4.1, §4.2)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Litestar, Request
from litestar.params import FromPath
from msgspec import UNSET, UnsetType

from ductile.api.auth import scopes
from ductile.api.context import Facade
from ductile.api.errors import ApiError
from ductile.api.handlers import get
from ductile.api.schemas import errors
from ductile.app.facade import Ductile
from ductile.runtime.catalog import LoadedPlugin
from ductile.runtime.skills import Skill, SkillList
from ductile.runtime.skills import skills as skills_of


def _plugin_or_404(ductile: Ductile, plugin: str) -> LoadedPlugin:
    loaded = ductile.plugins.get(plugin)
    if loaded is None:
        raise ApiError(404, "plugin not found")
    return loaded


class CommandDetail(msgspec.Struct, kw_only=True):
    """A manifest command; the keys the manifest leaves out are left out. Its schemas are the
    manifest's own JSON Schema documents."""

    name: str
    type: Literal["read", "write"]
    description: str | UnsetType = UNSET
    idempotent: bool | UnsetType = UNSET
    retry_safe: bool | UnsetType = UNSET
    input_schema: dict[str, Any] | UnsetType = UNSET
    output_schema: dict[str, Any] | UnsetType = UNSET


class PluginDetail(msgspec.Struct, kw_only=True):
    """``GET /plugin/{plugin}`` (api.md §3)."""

    name: str
    version: str
    description: str | UnsetType = UNSET
    protocol: int
    concurrency_safe: bool
    commands: list[CommandDetail]


def _unset_if_none(value: Any) -> Any:
    return UNSET if value is None else value


def describe(loaded: LoadedPlugin) -> PluginDetail:
    m = loaded.manifest
    return PluginDetail(
        name=loaded.name, version=m.version, description=m.description or UNSET, protocol=m.protocol,
        concurrency_safe=m.concurrency_safe,
        commands=[
            CommandDetail(name=c.name, type=c.type, description=c.description or UNSET,
                          idempotent=_unset_if_none(c.idempotent), retry_safe=_unset_if_none(c.retry_safe),
                          input_schema=_unset_if_none(c.input_schema), output_schema=_unset_if_none(c.output_schema))
            for c in m.commands
        ],
    )


def plugin_document(document: dict[str, Any], plugin: str) -> dict[str, Any]:
    """The gateway's document restricted to ``plugin``'s command operations (api.md §3)."""
    prefix = f"/plugin/{plugin}/"
    paths = {path: item for path, item in document["paths"].items()
             if path.startswith(prefix) and "{" not in path and "post" in item}
    return {**document, "paths": paths}


@get("/plugin/{plugin:str}", guards=[scopes("plugin:catalog:ro", "plugin:rw")], responses=errors(400, 401, 403, 404))
async def get_plugin(ductile: Facade, plugin: FromPath[str]) -> PluginDetail:
    return describe(_plugin_or_404(ductile, plugin))


DOCUMENT_KEY = "openapi_document"


@get("/plugin/{plugin:str}/openapi.json", guards=[scopes()], responses=errors(400, 401, 404))
async def plugin_openapi(ductile: Facade, request: Request[Any, Any, Any], plugin: FromPath[str]) -> dict[str, Any]:
    _plugin_or_404(ductile, plugin)
    return plugin_document(_gateway_document(request.app), plugin)


def _gateway_document(app: Litestar) -> dict[str, Any]:
    """The app's whole document as a dict, built once per app (a reload builds a new app): building
    it costs ~100 ms of CPU, which any token holder could otherwise ask for in a loop."""
    document: dict[str, Any] | None = app.state.get(DOCUMENT_KEY)
    if document is None:
        document = app.state[DOCUMENT_KEY] = app.openapi_schema.to_schema()
    return document


@get("/skills", guards=[scopes()], responses=errors(401))
async def skills(ductile: Facade) -> SkillList:
    # Pipeline entries (pipeline.<n>) join once pipelines are compiled.
    return SkillList(msgspec.convert(skills_of(ductile.catalog, ductile.config.pipelines), list[Skill]))


class ManifestAuth(msgspec.Struct, frozen=True):
    type: str = "bearer"


class ManifestApi(msgspec.Struct, frozen=True):
    type: str = "openapi"
    url: str = "/openapi.json"


class AiPluginManifest(msgspec.Struct, frozen=True):
    """api.md §3 ``GET /.well-known/ai-plugin.json``: fixed, so every field has its value here."""

    schema_version: str = "v1"
    name_for_human: str = "Ductile Gateway"
    name_for_model: str = "ductile"
    description_for_human: str = "Self-hosted automation gateway: trigger plugins and pipelines, inspect jobs."
    description_for_model: str = (
        "Discover plugins with GET /skills or GET /openapi.json (one plugin: /plugin/{name}/openapi.json). "
        "Invoke a command with POST /plugin/{name}/{command} and a JSON body {\"payload\": {...}}; "
        "the answer carries a job_id. Poll GET /job/{job_id} until its status is terminal."
    )
    auth: ManifestAuth = ManifestAuth()
    api: ManifestApi = ManifestApi()


AI_PLUGIN = AiPluginManifest()


@get("/.well-known/ai-plugin.json", guards=[scopes()], responses=errors(401))
async def ai_plugin() -> AiPluginManifest:
    return AI_PLUGIN
