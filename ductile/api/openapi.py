"""``GET /openapi.json``: an OpenAPI 3.1 description of every route (api.md §4.2).

Written by hand rather than generated: routes read their bodies and queries themselves (exact
error texts), so the schemas here are the contract. Each plugin command adds its own
``POST /plugin/<p>/<c>`` operation.
"""

from __future__ import annotations

from typing import Any

from litestar import get

from ductile.api.auth import scopes
from ductile.api.catalog import ACCEPTED_SCHEMA, ERROR_SCHEMA, openapi_document, plugin_paths
from ductile.api.context import Facade
from ductile.api.jobs import DEFAULT_LIMIT, MAX_LIMIT
from ductile.projections.job_queries import STATUS_ALIASES
from ductile.runtime.catalog import Catalog
from ductile.vocabulary import JobStatus

OBJ: dict[str, Any] = {"type": "object"}
STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
ERR = {"$ref": "#/components/schemas/Error"}
SECURED = [{"BearerAuth": []}]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "bad request", 401: "missing or invalid bearer token", 403: "insufficient scope",
            404: "not found", 409: "conflict", 413: "request body too large", 500: "internal error",
            501: "not implemented", 503: "unavailable"}
    return {str(c): _json(ERR, text[c]) for c in codes}


def _obj(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


def _query(name: str, schema: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or STR, "description": description}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def _op(summary: str, ok: dict[str, Any], errors: tuple[int, ...] = (), *, secured: bool = True, tag: str = "gateway",
        parameters: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        status: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {status: ok, **_errors(*errors)}}
    if secured:
        op["security"] = SECURED
        op["responses"].update(_errors(401))
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


JOB = _obj(["job_id", "status", "plugin", "command", "submitted_by", "attempt", "created_at"],
           job_id=STR, status=STR, plugin=STR, command=STR, submitted_by=STR, attempt=INT, max_attempts=INT,
           parent_job_id=STR, pipeline=STR, step_id=STR, created_at=STR, started_at=STR, completed_at=STR,
           next_retry_at=STR, result={}, last_error=STR)
# The status filter also takes "" (no filter) and the aliases of job_queries, any letter case.
# An RFC 3339 bound, or "" for none.
TIMESTAMP: dict[str, Any] = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "maxLength": 0}]}
STATUS_FILTER: dict[str, Any] = {"type": "string", "enum": ["", *JobStatus, *STATUS_ALIASES]}
LIST_FILTERS = [_query("plugin"), _query("command"), _query("status", STATUS_FILTER), _query("submitted_by"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                                       "default": DEFAULT_LIMIT})]
PAYLOAD_BODY = {"type": "object", "properties": {"payload": OBJ}}


def static_paths() -> dict[str, Any]:
    jobs_list = _obj(["jobs", "total"], jobs={"type": "array", "items": OBJ}, total=INT)
    return {
        "/": {"get": _op("Gateway identity and discovery links", _json(_obj(["name", "version", "discovery"],
                                                                             name=STR, version=STR, discovery=OBJ)),
                         secured=False)},
        "/healthz": {"get": _op("Liveness and queue depth", _json(_obj(
            ["status", "queue_depth", "posture"], status=STR, queue_depth=INT, posture=STR, uptime_seconds=INT,
            plugins_loaded=INT, plugins_circuit_open=INT, event_log_position=INT)), (500, 503), secured=False)},
        "/plugins": {"get": _op("Enabled plugins", _json(_obj(["plugins"], plugins={"type": "array", "items": OBJ})))},
        "/skills": {"get": _op("Skills for LLM operators", _json(_obj(["skills"], skills={"type": "array", "items": OBJ})))},
        "/openapi.json": {"get": _op("This document", _json(OBJ))},
        "/.well-known/ai-plugin.json": {"get": _op("AI plugin manifest", _json(OBJ))},
        "/plugin/{plugin}": {"get": _op("One plugin's manifest", _json(OBJ), (403, 404), parameters=[_path("plugin")])},
        "/plugin/{plugin}/openapi.json": {"get": _op("OpenAPI of one plugin", _json(OBJ), (404,),
                                                     parameters=[_path("plugin")])},
        "/plugin/{plugin}/{command}": {"post": _op(
            "Trigger a plugin command", _json({"$ref": "#/components/schemas/TriggerAccepted"}, "job queued"),
            (400, 403, 413, 500), parameters=[_path("plugin"), _path("command")], body=PAYLOAD_BODY, status="202")},
        "/job/{job_id}": {"get": _op("One job", _json(JOB), (403, 404), parameters=[_path("job_id")])},
        "/job/{job_id}/tree": {"get": _op("A job and its descendants", _json({"type": "array", "items": OBJ}),
                                          (403, 404), parameters=[_path("job_id")])},
        "/jobs": {"get": _op("Jobs, newest first", _json(jobs_list), (400, 403), parameters=LIST_FILTERS)},
        "/job-logs": {"get": _op("Terminal jobs, newest first", _json(_obj(["logs", "total"], logs={
            "type": "array", "items": OBJ}, total=INT)), (400, 403), parameters=[
            *LIST_FILTERS, _query("job_id"), _query("from", TIMESTAMP), _query("to", TIMESTAMP), _query("query"), _query("include_result")])},
        "/scheduler/jobs": {"get": _op("Schedule entries and their plans", _json(_obj(
            ["jobs"], jobs={"type": "array", "items": OBJ})), (403, 500))},
        "/analytics/summary": {"get": _op("Terminal jobs in the last 24 h", _json(OBJ), (403,))},
        "/analytics/queue": {"get": _op("Queue depth and age", _json(OBJ), (403,))},
        "/stopwatch/{plugin}": {"get": _op("Attempt duration percentiles", _json(OBJ), (400, 403, 404), parameters=[
            _path("plugin"), _query("window", {"type": "string", "enum": ["5m", "1h", "24h"]}),
            _query("include_subs")])},
        "/topology": {"get": _op("Plugins and the signals between them", _json(OBJ), (403,))},
        "/system/breaker/{plugin}/reset": {"post": _op(
            "Close a circuit breaker", _json(_obj(["plugin", "command", "state"], plugin=STR, command=STR, state=STR)),
            (400, 403, 404), parameters=[_path("plugin")], body={"type": "object", "properties": {"command": STR}})},
        "/system/reload": {"post": _op("Reload the configuration", _json(OBJ), (403, 409, 501))},
        "/config/view": {"get": _op("The running configuration, redacted", _json(OBJ), (403,))},
        "/system/doctor": {"get": _op("Configuration and runtime findings", _json(OBJ), (403, 500))},
        "/system/selfcheck": {"get": _op("Online self-check", _json(OBJ), (403, 409, 500))},
        "/metrics": {"get": _op("Prometheus metrics", {"description": "Prometheus text format 0.0.4",
                                                       "content": {"text/plain": {"schema": STR}}}, (403,))},
        "/events": {"get": _op("Server-sent observation events", {
            "description": "text/event-stream; frame ids are event-log positions",
            "content": {"text/event-stream": {"schema": STR}}}, (400, 403), parameters=[
            _query("types"), _query("last_event_id"), _query("token"),
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR}])},
    }


def pipeline_paths(names: list[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/pipeline/{name}": {"post": _op("Trigger a pipeline", _json(OBJ, "pipeline queued"), (400, 403, 404, 413, 500, 503),
                                         parameters=[_path("name"), _query("async")], body=PAYLOAD_BODY, status="202")},
    }
    for name in names:
        op = _op(f"Trigger pipeline {name}", _json(OBJ, "pipeline queued"), (400, 403, 413, 500, 503),
                 parameters=[_query("async")], body=PAYLOAD_BODY, status="202", tag="pipelines")
        op["operationId"] = f"pipeline__{name}"
        op["responses"]["200"] = _json(OBJ, "synchronous pipeline finished")
        paths[f"/pipeline/{name}"] = {"post": op}
    return paths


def build(catalog: Catalog, pipelines: list[str] | None = None) -> dict[str, Any]:
    paths = static_paths()
    for name in sorted(catalog.plugins):
        paths.update(plugin_paths(catalog.plugins[name]))
    paths.update(pipeline_paths(sorted(pipelines or [])))
    doc = openapi_document(paths)
    doc["components"]["schemas"].update({"Error": ERROR_SCHEMA, "TriggerAccepted": ACCEPTED_SCHEMA})
    return doc


@get("/openapi.json", guards=[scopes()])
async def openapi_json(ductile: Facade) -> dict[str, Any]:
    return build(ductile.catalog, ductile.pipelines.names())
