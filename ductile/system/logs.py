"""Gateway logs: one JSON object per line on stdout (or human text lines).

``time`` (RFC3339 UTC, milliseconds), ``level`` (DEBUG|INFO|WARN|ERROR), ``msg``, ``component``,
then the line's own fields. Built on the stdlib ``logging`` so third-party libraries' records
land in the same stream.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import msgspec

_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
                logging.CRITICAL: "ERROR"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR}
_encoder = msgspec.json.Encoder()


def _timestamp(created: float) -> str:
    whole = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname),
            "msg": record.getMessage(),
            "component": getattr(record, "component", record.name.removeprefix("ductile.")),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for k, v in fields.items():
                if v is not None:
                    line[k] = v
        if record.exc_info and record.levelno >= logging.ERROR:
            line["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        component = getattr(record, "component", record.name)
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        return f"{_timestamp(record.created)} {level:<5} [{component}] {record.getMessage()} {extra}".rstrip()


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # uvicorn's own access/error lines would duplicate ours; keep only its warnings.
    for noisy in ("uvicorn", "uvicorn.access", "uvicorn.error", "litestar"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Log:
    """A component's logger: ``log.info("job completed", job_id=..., status=...)``."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._logger = logging.getLogger(f"ductile.{component}")

    def _emit(self, level: int, msg: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"component": self.component, "fields": fields})

    def debug(self, msg: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._emit(logging.INFO, msg, fields)

    def warn(self, msg: str, **fields: Any) -> None:
        self._emit(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, fields)

    def at(self, level: str, msg: str, **fields: Any) -> None:
        self._emit(_LEVELS.get(level, logging.INFO), msg, fields)
