"""``ductile api ENDPOINT``: one authenticated raw call to any gateway route (cli.md §2.6).

How the request is built:
- the method is ``-X`` when given, else POST when ``-b`` or ``-f`` is given, else GET;
- ``-f k=v`` builds a JSON object body: a value that parses as JSON is used as parsed (``7``,
  ``true``, ``{"a":1}``), anything else is a string; a dotted key nests; for ``POST /plugin/…``
  and ``POST /pipeline/…`` a key outside ``payload`` goes under ``payload``;
- with ``-X GET`` the ``-f`` fields become query parameters instead;
- ``-b`` is the raw body: JSON text, ``@file``, or ``-`` for stdin; it cannot be combined with ``-f``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Annotated, Any, TextIO

import msgspec
from cyclopts import Parameter

from ductile.cli.output import CliFailure, emit_json, fail

QUERY_METHODS = {"GET", "HEAD"}
_PAYLOAD_ROUTE = re.compile(r"^/(plugin/[^/]+/[^/]+|pipeline/[^/]+)/?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHOD = re.compile(r"^[A-Za-z]+$")


def usage_error(message: str) -> CliFailure:
    return CliFailure(message, code=2)


@dataclass
class ApiRequest:
    method: str
    path: str  # without the query string
    query: list[tuple[str, str]] = dataclass_field(default_factory=list)
    headers: list[tuple[str, str]] = dataclass_field(default_factory=list)
    body: bytes | None = None
    method_defaulted: bool = False

    @property
    def target(self) -> str:
        if not self.query:
            return self.path
        from urllib.parse import urlencode

        return f"{self.path}?{urlencode(self.query)}"

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def field_value(text: str) -> Any:
    """``7`` → 7, ``true`` → True, ``{"a":1}`` → a dict; anything that is not JSON stays a string."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def split_field(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise usage_error(f"-f expects key=value (got {raw!r})")
    return key, value


def _put(target: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    for part in parts[:-1]:
        existing = target.setdefault(part, {})
        if not isinstance(existing, dict):
            raise usage_error(f"-f {key}: conflicts with an earlier field")
        target = existing
    last = parts[-1]
    if last in target:
        if isinstance(target[last], dict) and isinstance(value, dict):
            target[last].update(value)
            return
        raise usage_error(f"-f {key}: given more than once")
    target[last] = value


def fields_body(fields: list[str], *, under_payload: bool) -> dict[str, Any]:
    """The JSON object built from ``-f`` fields (see the module docstring)."""
    body: dict[str, Any] = {}
    for raw in fields:
        key, text = split_field(raw)
        parts = key.split(".")
        if under_payload and parts[0] != "payload":
            parts = ["payload", *parts]
        value = field_value(text)
        if under_payload and parts == ["payload"] and not isinstance(value, dict):
            raise usage_error(f"-f {key}: payload must be a JSON object")
        _put(body, parts, value, key)
    return body


def parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    name = name.strip()
    if not sep or not _HEADER_NAME.match(name):
        raise usage_error(f"-H expects 'Name: value' (got {raw!r})")
    return name, value.strip()


def read_body(body: str, stdin: TextIO | None = None) -> bytes:
    if body == "-":
        return (stdin or sys.stdin).read().encode()
    if body.startswith("@"):
        path = Path(body[1:]).expanduser()
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CliFailure(f"cannot read --body file {path}: {exc.strerror or exc}") from None
    return body.encode()


def build_request(
    endpoint: str,
    method: str | None = None,
    fields: list[str] | None = None,
    headers: list[str] | None = None,
    body: str | None = None,
    stdin: TextIO | None = None,
) -> ApiRequest:
    """Turn the command line into the request (no I/O other than reading ``-b @file``/``-b -``)."""
    from urllib.parse import parse_qsl

    fields = fields or []
    if body is not None and fields:
        raise usage_error("use only one of -b/--body or -f/--field")
    if method is not None and not _METHOD.match(method):
        raise usage_error(f"invalid -X/--method {method!r}")
    endpoint = endpoint.strip()
    if not endpoint.startswith("/"):
        endpoint = "/" + endpoint
    path, _, query_text = endpoint.partition("?")
    query = parse_qsl(query_text, keep_blank_values=True)
    defaulted = method is None
    verb = method.upper() if method else ("POST" if body is not None or fields else "GET")
    request = ApiRequest(verb, path, query, [parse_header(h) for h in headers or []], method_defaulted=defaulted)
    if fields and verb in QUERY_METHODS:
        request.query.extend(split_field(raw) for raw in fields)
    elif fields:
        data = fields_body(fields, under_payload=verb == "POST" and bool(_PAYLOAD_ROUTE.match(path)))
        request.body = msgspec.json.encode(data)
    elif body is not None:
        request.body = read_body(body, stdin)
    if request.body is not None and request.header("content-type") is None:
        request.headers.append(("Content-Type", "application/json"))
    return request


ApiUrl = Annotated[str | None, Parameter(help="Gateway URL (default: http://<api.listen> from the config).")]
ApiKey = Annotated[str | None, Parameter(help="API token (default: $DUCTILE_API_KEY; none: no Authorization).")]


def api(
    endpoint: str,
    *,
    method: Annotated[str | None, Parameter(name=["--method", "-X"], help="HTTP method (default GET, "
                                                                            "or POST with -b/-f).")] = None,
    field: Annotated[list[str] | None, Parameter(name=["--field", "-f"], negative="", help="key=value (repeatable): a JSON "
                                                 "body field, or a query parameter with -X GET.")] = None,
    header: Annotated[list[str] | None, Parameter(name=["--header", "-H"], negative="", help="'Name: value' "
                                                  "(repeatable).")] = None,
    body: Annotated[str | None, Parameter(name=["--body", "-b"], help="Raw body: JSON, @file, or - "
                                          "for stdin.")] = None,
    config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory "
                                            "(for the default --api-url).")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    json: Annotated[bool, Parameter(help="Stdout is one JSON document (a non-JSON body becomes a "
                                         "JSON string).")] = False,
) -> int:
    """Call any gateway route and print the response body (pretty JSON when it is JSON).

    Exit 0 when HTTP < 400, 1 otherwise (the body is still printed). ``/events`` streams its
    frames until Ctrl-C.
    """
    import os

    from ductile.cli.client import default_api_url, require_local_host

    request = build_request(endpoint, method, field, header, body)
    try:
        base = (api_url or default_api_url(config, config_dir)).rstrip("/")
        require_local_host(base)
    except CliFailure as exc:
        raise fail(exc.message, json=json, prefix=exc.prefix) from None
    key = api_key if api_key is not None else os.environ.get("DUCTILE_API_KEY")
    if key and request.header("authorization") is None:
        request.headers.append(("Authorization", f"Bearer {key}"))
    return _send(base, request, json)


def _send(base: str, request: ApiRequest, json: bool) -> int:
    import httpx

    from ductile.cli.client import UNREACHABLE_HINT, error_text

    timeout = httpx.Timeout(10.0, read=660.0)  # a synchronous pipeline may take api.max_sync_timeout
    try:
        with httpx.Client(timeout=timeout) as client, client.stream(
            request.method, base + request.target, headers=request.headers, content=request.body
        ) as resp:
            if resp.status_code < 400 and resp.headers.get("content-type", "").startswith("text/event-stream"):
                _stream(resp, json)
                return 0
            content = resp.read()
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the gateway at {base}: {exc} {UNREACHABLE_HINT}", json=json) from None
    decoded = _decode(content)
    _print_body(content, decoded, json)
    if resp.status_code < 400:
        return 0
    message = f"{request.method} {request.path} failed ({resp.status_code}): " + error_text(
        decoded if decoded is not _NOT_JSON else None, resp.reason_phrase or "error")
    if resp.status_code == 405 and request.method_defaulted and "GET" in resp.headers.get("allow", ""):
        message += " (use -X GET to send -f fields as query parameters)"
    # The body, printed above, is the one JSON document of ``--json``.
    raise CliFailure(message, json_written=json)


_NOT_JSON = object()


def _decode(content: bytes) -> Any:
    if not content.strip():
        return _NOT_JSON
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        return _NOT_JSON


def _print_body(content: bytes, decoded: Any, json: bool) -> None:
    if decoded is not _NOT_JSON:
        emit_json(decoded)
    elif json:
        emit_json(content.decode(errors="replace") if content else None)
    elif content:
        text = content.decode(errors="replace")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _stream(resp: Any, json: bool) -> None:
    """Print SSE frames as they arrive: raw, or one compact JSON object per frame with ``--json``."""
    from ductile.formats.sse import SseLines

    frames = SseLines()
    for line in resp.iter_lines():
        if not json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            continue
        for frame in frames.feed((line,)):
            out: dict[str, Any] = {}
            if frame.id is not None:
                out["id"] = frame.id
            if frame.event is not None:
                out["event"] = frame.event
            if frame.data is not None:
                data = _decode(frame.data.encode())
                out["data"] = frame.data if data is _NOT_JSON else data
            sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
            sys.stdout.flush()
