"""The webhook listener (webhooks.md §2): its own server on ``webhooks.listen``.

A small ASGI app rather than Litestar: the spec fixes one check order across every request
(path → method → size → signature → ...), with its own JSON bodies for unknown paths and methods,
and a size check that refuses an oversized ``Content-Length`` before any of the body is read and
reads at most ``max_body_size + 1`` bytes otherwise. Litestar's router answers 404/405 with its own
bodies before any handler runs and buffers the whole body under one app-wide limit, so each of those
rules would be a workaround; here each is one line of the order.

The endpoint table is read through ``EndpointTable.current`` once per request: a reload swaps the
holder's table atomically, and a request in flight finishes under the table it started with.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn

from ductile import json_limits
from ductile.api.server import GatewayHttpProtocol, HttpTimeouts, make_server
from ductile.app.facade import Ductile
from ductile.app.webhooks import ReplayGuard, WebhookOutcome
from ductile.config.model import WebhookEndpoint, WebhooksConfig
from ductile.events.timefmt import NS
from ductile.runtime.metrics import Metrics
from ductile.system.logs import Log, request_context
from ductile.webhook_signatures import TimestampVerdict, check_timestamp, parse_timestamp, replay_key, verify

if TYPE_CHECKING:
    from litestar.types import ASGIApp

log = Log("webhook")  # operations.md §1's component name
TIMEOUTS = HttpTimeouts(read=10.0, write=10.0, idle=60.0)  # webhooks.md §1
HEALTH_PATH = "/healthz"
LISTENER = "webhooks"

NOT_FOUND = (404, {"error": "endpoint not found"})
METHOD_NOT_ALLOWED = (405, {"error": "method not allowed"})
TOO_LARGE = (413, {"error": "payload too large"})
READ_FAILED = (400, {"error": "failed to read request body"})
FORBIDDEN = (403, {"error": "forbidden"})
INVALID_JSON = (400, {"error": "invalid JSON body"})
ENQUEUE_FAILED = (500, {"error": "failed to enqueue job"})
# §2: a request the HTTP server cannot parse gets a bare 400 (no body, so not the API's JSON one).
BARE_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class WebhookHttpProtocol(GatewayHttpProtocol):
    """The gateway's HTTP protocol (read/write deadlines) with the webhook listener's own 400."""

    def send_400_response(self, msg: str) -> None:
        self.transport.write(BARE_400)
        self.transport.close()


def webhook_server(app: ASGIApp, host: str, port: int, timeouts: HttpTimeouts = TIMEOUTS) -> uvicorn.Server:
    """The listener's server; ``timeouts`` are §1's, shorter only in tests."""
    return make_server(app, host, port, timeouts, protocol=WebhookHttpProtocol)


class EndpointTable:
    """The served endpoints by path, one table per runtime (a reload swaps the whole app)."""

    def __init__(self, config: WebhooksConfig) -> None:
        self.current: Mapping[str, WebhookEndpoint] = table_of(config)


def table_of(config: WebhooksConfig) -> Mapping[str, WebhookEndpoint]:
    """Endpoints whose plugin is enabled, by exact path (a disabled plugin's path answers 404)."""
    return {endpoint.path: endpoint for endpoint in config.served}


class _BodyUnreadable(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


class WebhookApp:
    def __init__(self, ductile: Ductile, table: EndpointTable, metrics: Metrics | None = None) -> None:
        self._ductile = ductile
        self._table = table
        self._metrics = metrics
        self._enqueues: set[asyncio.Task[WebhookOutcome]] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        status = 500
        with request_context(request_id):
            try:
                status, body, headers = await self._handle(scope, receive)
                await _respond(send, status, body, headers, request_id)
            finally:
                log.info("http request", listener=LISTENER, method=scope.get("method"), path=scope.get("path"),
                         status=status, duration_ms=int((time.perf_counter() - started) * 1000),
                         request_id=request_id)

    async def _handle(self, scope: dict[str, Any], receive: Any) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        path: str = scope.get("path", "")
        method: str = scope.get("method", "")
        if path == HEALTH_PATH:
            if method in ("GET", "HEAD"):
                return 200, {"status": "ok"}, []
            return *METHOD_NOT_ALLOWED, [(b"allow", b"GET")]
        endpoint = self._table.current.get(path)  # one read: in-flight requests keep their table
        if endpoint is None:
            return *NOT_FOUND, []
        status, body, headers = await self._endpoint(endpoint, scope, method, receive)
        if self._metrics is not None:
            self._metrics.webhook_request(endpoint.name, status)
        return status, body, headers

    async def _endpoint(self, endpoint: WebhookEndpoint, scope: dict[str, Any], method: str,
                        receive: Any) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        if method != "POST":
            return *METHOD_NOT_ALLOWED, [(b"allow", b"POST")]
        headers = _headers(scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > endpoint.max_body_size):
            return *TOO_LARGE, []  # refused before any of the body is read
        try:
            raw = await _read_body(receive, endpoint.max_body_size)
        except _BodyTooLarge:
            return *TOO_LARGE, []
        except _BodyUnreadable:
            return *READ_FAILED, []

        signature = headers.get(endpoint.signature_header.lower(), "")
        if not signature.strip():
            return self._rejected(endpoint, scope, "missing_signature")
        timestamp: str | None = None
        guard: ReplayGuard | None = None
        if endpoint.timestamp_header is not None:
            timestamp = headers.get(endpoint.timestamp_header.lower())
            verdict = check_timestamp(timestamp, time.time(), endpoint.timestamp_tolerance)
            if verdict is not TimestampVerdict.OK:
                return self._rejected(endpoint, scope, verdict.value)
        if not verify(self._ductile.webhooks.secret(endpoint.secret_ref), raw, signature, timestamp):
            return self._rejected(endpoint, scope, "bad_signature")
        if timestamp is not None:
            sent = parse_timestamp(timestamp) or 0.0
            guard = ReplayGuard(endpoint=endpoint.path, signature_key=replay_key(signature) or "",
                                expires_at=int((sent + endpoint.timestamp_tolerance) * NS))

        body = _json_object(raw)  # only now: unauthenticated callers learn nothing about the parser
        if body is None:
            return *INVALID_JSON, []
        # Apart from the connection: a client that hangs up must not cancel the commit.
        task = asyncio.ensure_future(self._ductile.webhooks.accept(endpoint, body, guard))
        self._enqueues.add(task)
        task.add_done_callback(self._enqueues.discard)
        try:
            outcome = await asyncio.shield(task)
        except Exception as exc:
            log.error("webhook enqueue failed", exc=exc, endpoint=endpoint.name, plugin=endpoint.plugin)
            return *ENQUEUE_FAILED, []
        if outcome.replayed:
            log.warn("webhook replay refused", endpoint=endpoint.name, job_id=outcome.job_id)
            return 409, {"error": "replayed request", "job_id": outcome.job_id}, []
        return 202, {"job_id": outcome.job_id}, []

    def _rejected(self, endpoint: WebhookEndpoint, scope: dict[str, Any],
                  reason: str) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        # Never the body, the signature or the secret: only which check refused.
        client = scope.get("client")
        log.warn("webhook rejected", endpoint=endpoint.name, remote_addr=client[0] if client else None, reason=reason)
        return *FORBIDDEN, []


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """Request headers by lowercase name; the first of a repeated name wins."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


async def _read_body(receive: Any, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: one byte past the limit is enough to refuse."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _BodyUnreadable()  # the client left, or the read deadline closed the connection
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object (empty is ``{}``), within the shape limits; None when it is not."""
    if not raw.strip():
        return {}
    try:
        body = json_limits.decode(raw)
        if not isinstance(body, dict):
            return None
        json_limits.check_int_width(body, raw)
    except (msgspec.DecodeError, json_limits.TooDeep, json_limits.IntTooWide):
        return None
    return body


async def _respond(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]],
                   request_id: str) -> None:
    data = msgspec.json.encode(body)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"x-request-id", request_id.encode()), *headers,
    ]})
    await send({"type": "http.response.body", "body": data})
