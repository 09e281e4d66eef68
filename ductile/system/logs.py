"""Gateway logs: one JSON object per line on stdout (or human text lines).

``time`` (RFC3339 UTC, milliseconds), ``level`` (DEBUG|INFO|WARN|ERROR), ``msg``, ``component``,
then the line's own fields. Built on the stdlib ``logging`` so third-party libraries' records
land in the same stream.

Errors never vanish: a line logged with an exception (``log.error("...", exc=exc)``, or any
record carrying ``exc_info``) adds ``error_type``, ``error`` and ``stack`` (the formatted
traceback), and a line logged while an API request is served carries its ``request_id``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

import msgspec

_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
                logging.CRITICAL: "ERROR"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR}
_encoder = msgspec.json.Encoder()

# The id of the API request being served in this context (an asyncio task per request), so every
# line logged on its behalf, a fault above all, can be matched with the answer's X-Request-ID.
_request_id: ContextVar[str | None] = ContextVar("ductile_request_id", default=None)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Lines logged inside carry ``request_id``."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


_second: tuple[int, str] = (-1, "")  # the last whole second formatted: strftime once per second, not per line


def _timestamp(created: float) -> str:
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """The line's own fields, then what its exception and its request add (never overriding)."""
    fields = {k: v for k, v in (getattr(record, "fields", None) or {}).items() if v is not None}
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        fields.setdefault("error_type", type(exc).__name__)
        fields.setdefault("error", str(exc))
        fields["stack"] = formatter.formatException(record.exc_info)
    # Stamped when the record was made (Log does); a foreign record is formatted in its own context.
    if (request_id := getattr(record, "request_id", None) or _request_id.get()) is not None:
        fields.setdefault("request_id", request_id)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname),
            "msg": record.getMessage(),
            "component": getattr(record, "component", record.name.removeprefix("ductile.")),
        }
        line.update(_fields(record, self))
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record, self)
        stack = fields.pop("stack", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        component = getattr(record, "component", record.name)
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        line = f"{_timestamp(record.created)} {level:<5} [{component}] {record.getMessage()} {extra}".rstrip()
        return f"{line}\n{stack}" if stack else line


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # No formatter of ours prints the process or thread a record came from: don't look them up
    # for every record (the stdlib's documented switches).
    logging.logProcesses = logging.logMultiprocessing = logging.logThreads = False
    # uvicorn's own access/error lines would duplicate ours, and aiosqlite logs every statement at
    # DEBUG under a component operations.md §1 does not have: keep only their warnings.
    for noisy in ("uvicorn", "uvicorn.access", "uvicorn.error", "litestar", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Log:
    """A component's logger: ``log.info("job completed", job_id=..., status=...)``.

    ``exc=`` attaches an exception: the line then carries its type, message and traceback
    (``stack``). An unexpected exception is logged so, once, where it is handled."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._logger = logging.getLogger(f"ductile.{component}")

    def _emit(self, level: int, msg: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        logger = self._logger
        if logger.isEnabledFor(level):
            # The record is made here rather than by Logger.log: no caller lookup (a stack walk per
            # line), as no line of ours prints the source file.
            exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
            record = logger.makeRecord(logger.name, level, "(unknown file)", 0, msg, (), exc_info, extra={
                "component": self.component, "fields": fields, "request_id": _request_id.get()})
            logger.handle(record)

    def debug(self, msg: str, *, exc: BaseException | None = None, **fields: Any) -> None:
        self._emit(logging.DEBUG, msg, exc, fields)

    def info(self, msg: str, *, exc: BaseException | None = None, **fields: Any) -> None:
        self._emit(logging.INFO, msg, exc, fields)

    def warn(self, msg: str, *, exc: BaseException | None = None, **fields: Any) -> None:
        self._emit(logging.WARNING, msg, exc, fields)

    def error(self, msg: str, *, exc: BaseException | None = None, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, exc, fields)

    def at(self, level: str, msg: str, *, exc: BaseException | None = None, **fields: Any) -> None:
        self._emit(_LEVELS.get(level, logging.INFO), msg, exc, fields)
