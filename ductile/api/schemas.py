"""What the OpenAPI document says about the routes that Litestar cannot read off their types: the
one error shape, the bearer scheme, and request bodies (api.md §4.2).

Route bodies are read by ``body.json_object`` rather than by Litestar (its texts for a bad body,
a deep one or a wide integer are api.md's, not Litestar's), so a handler has no ``data`` parameter
for Litestar to describe; its body is declared here and attached through ``operation_class``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import msgspec
from litestar import MediaType, Response, Router
from litestar.enums import ParamType
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from ductile import __version__
from ductile.api.auth import scopes


class ErrorBody(msgspec.Struct, frozen=True):
    """Every refusal of the API (api.md §1)."""

    error: str


SECURED: list[dict[str, list[str]]] = [{"BearerAuth": []}]

_ERROR_TEXT = {400: "bad request", 401: "missing or invalid bearer token", 403: "insufficient scope",
               404: "not found", 409: "conflict", 413: "request body too large", 500: "internal error",
               501: "not implemented", 503: "unavailable"}


def errors(*codes: int, **texts: str) -> dict[int, ResponseSpec]:
    """The error responses of a route, each an ``ErrorBody``; ``texts`` (``e400="..."``) say what
    a status means on that route. A 400 here also replaces the one Litestar adds for handlers with
    parameters, whose body (``status_code``, ``detail``) is not the API's."""
    return {c: ResponseSpec(ErrorBody, description=texts.get(f"e{c}", _ERROR_TEXT[c]), generate_examples=False)
            for c in codes}


@dataclass
class RawSchema(Schema):
    """A JSON Schema given as data (a plugin manifest's ``input_schema``), emitted as it is."""

    document: dict[str, Any] = field(default_factory=dict)

    def to_schema(self) -> dict[str, Any]:
        return self.document


OBJECT = Schema(type=OpenAPIType.OBJECT)
PAYLOAD_BODY = Schema(type=OpenAPIType.OBJECT, properties={"payload": OBJECT})


def body_of(schema: Schema) -> type[Operation]:
    """An ``operation_class`` whose operation declares an optional JSON request body of ``schema``."""

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(content={"application/json": OpenAPIMediaType(schema=schema)},
                                            required=False)

    return WithBody


def _json_not_found(response: Response[Any]) -> Response[Any]:
    # Litestar's router answers an unknown path under it with an HTML page; the API's 404 is JSON.
    if response.status_code == 404:
        return Response({"error": "not found"}, status_code=404, media_type=MediaType.JSON)
    return response


def openapi_config() -> OpenAPIConfig:
    """The document's header (api.md §4.2); Litestar writes the paths from the route handlers."""
    return OpenAPIConfig(
        title="Ductile Gateway",
        version=__version__,
        components=Components(security_schemes={"BearerAuth": SecurityScheme(type="http", scheme="bearer")}),
        create_examples=False,
        use_handler_docstrings=True,
        # Served at /openapi.json behind a token, as api.md §3 has it, in place of Litestar's /schema.
        openapi_router=Router("/openapi.json", route_handlers=[], guards=[scopes()], include_in_schema=False,
                              after_request=_json_not_found),
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"], media_type=MediaType.JSON)],
    )


def _error_response(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content={
        "application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/ErrorBody"))})


def _query(name: str, description: str) -> Parameter:
    return Parameter(name=name, param_in=ParamType.QUERY, required=False, schema=Schema(type=OpenAPIType.STRING),
                     description=description)


EVENTS = PathItem(get=Operation(
    operation_id="EventsStream",
    summary="Server-sent observation events",
    description="api.md §5. An ASGI route (the stream outlives a response), which Litestar does not describe.",
    parameters=[
        _query("types", "comma-separated event types to receive"),
        _query("last_event_id", "resume after this event-log position"),
        _query("token", "the bearer token, for clients that cannot send a header"),
        Parameter(name="Last-Event-ID", param_in=ParamType.HEADER, required=False,
                  schema=Schema(type=OpenAPIType.STRING), description="resume after this event-log position"),
    ],
    responses={
        "200": OpenAPIResponse(description="text/event-stream; frame ids are event-log positions",
                               content={"text/event-stream": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))}),
        "400": _error_response("invalid Last-Event-ID"),
        "401": _error_response(_ERROR_TEXT[401]),
        "403": _error_response(_ERROR_TEXT[403]),
    },
    security=SECURED,
))


def describe_asgi_routes(document: OpenAPI) -> None:
    """Add the routes Litestar cannot describe from a handler's types to its generated document."""
    document.paths = {**(document.paths or {}), "/events": EVENTS}


def query_schema(schema: Schema) -> dict[str, Any]:
    """``schema_extra`` for a query parameter that a handler reads as a plain string (to answer
    api.md's own refusal texts) but whose accepted values the document should state."""
    stated = {f.name: getattr(schema, f.name) for f in fields(schema) if getattr(schema, f.name) is not None}
    return {"one_of": None, **stated}
