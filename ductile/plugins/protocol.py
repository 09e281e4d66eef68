"""Protocol-2 envelopes (plugins.md §5, §6): the request a plugin reads and the response it writes.

Strict in what we send, lenient in what we accept: unknown response keys are ignored and only a
broken envelope (no output, not JSON, not an object, no valid `status`, a wrongly typed field that
the status makes us read) is a protocol failure. Emitted events and state updates are validated
separately, by `validate_ok`, because their failures are not retryable.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

import msgspec

from ductile.events.types import StopwatchSub
from ductile.json_limits import first_wide_int
from ductile.vocabulary import PermanentReason

PROTOCOL = 2
RESERVED_EVENT_PREFIX = "ductile."

NO_OUTPUT = "plugin spawn failed: decode response: plugin produced no output on stdout"
NOT_JSON = "plugin spawn failed: decode response: plugin output is not valid JSON"
ERROR_WITHOUT_MESSAGE = "plugin returned status error without message"
INT_OUT_OF_RANGE = "plugin spawn failed: decode response: integer out of range at {path} (allowed: -2^63 to 2^64-1)"

_T = TypeVar("_T")

_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn", "error": "error"}


# --- request (core -> plugin) -------------------------------------------------------------------


def encode_request(
    *,
    job_id: str,
    command: str,
    config: dict,
    state: dict,
    context: dict,
    deadline_at: str,
    secrets: dict | None = None,
    payload: dict | None = None,
    event: dict | None = None,
) -> bytes:
    """One JSON document plus `\\n`; keys in the §5 order, optional keys omitted rather than null."""
    request: dict[str, object] = {
        "protocol": PROTOCOL,
        "job_id": job_id,
        "command": command,
        "config": config,
    }
    if secrets:
        request["secrets"] = secrets
    request["state"] = state
    if payload:
        request["payload"] = payload
    request["context"] = context
    if event:
        request["event"] = event
    request["deadline_at"] = deadline_at
    return msgspec.json.encode(request) + b"\n"


class InvalidEvent(ValueError):
    """A `handle` job whose stored payload is not a valid event; fails without spawning."""


def event_for_handle(stored_payload: object, created_at: str, context: dict) -> dict:
    """The request's `event` for `handle`, decoded from the stored job payload (§5 rules 1-3).

    The stored payload is not modified; it is sent unchanged as the request's `payload`.
    """
    if not isinstance(stored_payload, dict):
        raise InvalidEvent(f"invalid event: job payload must be a JSON object (got {_kind(stored_payload)})")
    if "type" not in stored_payload and "payload" not in stored_payload:
        event_payload: dict = copy.deepcopy(stored_payload)
        event: dict[str, object] = {"type": "", "payload": event_payload}
    else:
        event, event_payload = _decode_envelope(stored_payload)
    if not event.get("timestamp"):
        event["timestamp"] = created_at
    for key, value in context.items():
        event_payload.setdefault(key, copy.deepcopy(value))
    return event


def _decode_envelope(stored: dict) -> tuple[dict[str, object], dict]:
    kind = stored.get("type")
    if kind is None:
        kind = ""
    if not isinstance(kind, str):
        raise InvalidEvent(f"invalid event: type must be a string (got {_kind(kind)})")
    payload = stored.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidEvent(f"invalid event: payload must be a JSON object (got {_kind(payload)})")
    payload = copy.deepcopy(payload)
    event: dict[str, object] = {"type": kind, "payload": payload}
    for key in ("dedupe_key", "source", "timestamp", "event_id"):
        value = stored.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidEvent(f"invalid event: {key} must be a string (got {_kind(value)})")
        event[key] = value
    return event, payload


# --- response (plugin -> core) ------------------------------------------------------------------


class LogLine(msgspec.Struct, frozen=True):
    level: str
    message: str


class PluginResponse(msgspec.Struct, frozen=True):
    status: str
    result: str
    error: str
    retry: bool
    events: object
    state_updates: object
    logs: tuple[LogLine, ...]
    raw: dict
    subs: tuple[StopwatchSub, ...] = ()  # ``ductile_stopwatch_subs``, malformed items dropped


class ProtocolError(Exception):
    """A broken response: `spawn_error`, retryable. `str()` is the job's error text."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def decode_response(stdout: bytes) -> PluginResponse:
    if not stdout.strip():
        raise ProtocolError(NO_OUTPUT)
    try:
        raw = msgspec.json.decode(stdout)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(NOT_JSON, str(exc)) from None
    if not isinstance(raw, dict):
        raise ProtocolError(NOT_JSON, f"response must be a JSON object (got {_kind(raw)})")
    status = raw.get("status")
    if status not in ("ok", "error"):
        raise ProtocolError(NOT_JSON, f'status must be "ok" or "error" (got {status!r})')

    _check_integers(raw)
    result = _optional(raw, "result", str, "")
    error, retry = "", True
    if status == "error":  # `error` and `retry` are only read on an error
        error = _optional(raw, "error", str, "").strip() or ERROR_WITHOUT_MESSAGE
        retry = _optional(raw, "retry", bool, True)
    return PluginResponse(
        status=status,
        result=result,
        error=error,
        retry=retry,
        events=raw.get("events"),
        state_updates=raw.get("state_updates"),
        logs=_logs(raw.get("logs")),
        raw=raw,
        subs=_subs(raw.get("ductile_stopwatch_subs")),
    )


def _check_integers(raw: dict) -> None:
    """Refuse an integer the log cannot record in the parts of a response that Ductile keeps."""
    kept = {key: raw.get(key) for key in _KEPT_KEYS}
    try:
        msgspec.msgpack.encode(kept)  # one pass in C; the path is looked for only on failure
    except OverflowError:
        # What the event log's msgpack can hold: a wider integer would make the completion fail.
        path = first_wide_int(kept, root="") or "?"
        raise ProtocolError(INT_OUT_OF_RANGE.format(path=path)) from None


_KEPT_KEYS = ("events", "state_updates", "ductile_stopwatch_subs")


def _optional(raw: dict, key: str, kind: type[_T], default: _T) -> _T:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ProtocolError(NOT_JSON, f"{key} must be a {kind.__name__} (got {_kind(value)})")
    return value


def _logs(value: object) -> tuple[LogLine, ...]:
    if not isinstance(value, list):
        return ()
    lines: list[LogLine] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        level = item.get("level")
        level = _LOG_LEVELS.get(level.strip().lower(), "info") if isinstance(level, str) else "info"
        message = item.get("message")
        if message is None:
            message = ""
        elif not isinstance(message, str):
            message = msgspec.json.encode(message).decode()
        lines.append(LogLine(level=level, message=message))
    return tuple(lines)


def _subs(value: object) -> tuple[StopwatchSub, ...]:
    """The plugin's timing breakdown; advisory, so a malformed item is dropped, never an error."""
    if not isinstance(value, list):
        return ()
    subs: list[StopwatchSub] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        name, dur_ns, status = item.get("name"), item.get("dur_ns"), item.get("status")
        extras = {key: item.get(key) for key in ("bytes", "count")}
        if (not isinstance(name, str) or not name.strip() or not _count(dur_ns)
                or (status is not None and not isinstance(status, str))
                or not all(v is None or _count(v) for v in extras.values())):
            continue
        subs.append(StopwatchSub(name=name, dur_ns=dur_ns, status=status, **extras))  # type: ignore[arg-type]
    return tuple(subs)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- validation of an ok response ---------------------------------------------------------------


class EmittedEvent(msgspec.Struct, frozen=True):
    type: str
    payload: dict
    dedupe_key: str | None
    source: str
    timestamp: str
    event_id: str


class ResponseRejected(Exception):
    """An `ok` response that cannot be applied as is; the job fails, not retried.

    `reason` is `invalid_response` (nothing is applied) or `route_error` (nothing is routed, but
    `state_updates` are still applied because the plugin already acted).
    """

    def __init__(self, reason: PermanentReason, message: str, state_updates: dict | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.state_updates = state_updates if state_updates is not None else {}


def validate_ok(
    response: PluginResponse, *, source: str, now_rfc3339: str, new_id: Callable[[], str]
) -> tuple[dict, list[EmittedEvent]]:
    """The state updates to apply and the events to route, with their missing fields filled."""
    state_updates = response.state_updates
    if state_updates is None:
        state_updates = {}
    if not isinstance(state_updates, dict):
        raise ResponseRejected(
            PermanentReason.INVALID_RESPONSE,
            f"invalid response: state_updates must be an object (got {_kind(state_updates)})",
        )
    try:
        items = _checked_events(response.events)
    except ValueError as exc:
        raise ResponseRejected(PermanentReason.ROUTE_ERROR, f"failed to route events: {exc}", state_updates) from None

    summary = response.result if response.result.strip() else None
    events: list[EmittedEvent] = []
    for item in items:
        payload = dict(item.get("payload") or {})
        if summary is not None and "result" not in payload:
            payload["result"] = summary
        events.append(
            EmittedEvent(
                type=item["type"],
                payload=payload,
                dedupe_key=item.get("dedupe_key"),
                source=_given(item, "source") or source,
                timestamp=_given(item, "timestamp") or now_rfc3339,
                event_id=_given(item, "event_id") or new_id(),
            )
        )
    return state_updates, events


def _checked_events(value: object) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"events must be a list (got {_kind(value)})")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"events[{i}] must be an object (got {_kind(item)})")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError(f"events[{i}].type must be a non-empty string")
        if kind.startswith(RESERVED_EVENT_PREFIX):
            raise ValueError(f'reserved event type "{kind}"')
        if item.get("payload") is not None and not isinstance(item["payload"], dict):
            raise ValueError(f"events[{i}].payload must be an object (got {_kind(item['payload'])})")
        if item.get("dedupe_key") is not None and not isinstance(item["dedupe_key"], str):
            raise ValueError(f"events[{i}].dedupe_key must be a string (got {_kind(item['dedupe_key'])})")
    return value


def _given(item: dict, key: str) -> str | None:
    """A plugin-supplied envelope field, if it is a usable string; otherwise Ductile fills it."""
    value = item.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _kind(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case dict():
            return "object"
        case list():
            return "array"
    return type(value).__name__
