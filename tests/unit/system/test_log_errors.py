"""Errors never vanish (issue 10 item 6): a logged exception keeps its traceback as ``stack``, and
every line logged while an API request is served carries that request's id."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from ductile.system.logs import JsonFormatter, Log, TextFormatter, _timestamp, request_context

log = Log("test")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the gateway would print, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def _decoded(out: io.StringIO) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in out.getvalue().splitlines()]


def _fail_deep_inside() -> None:
    raise ValueError("bad value")


def _caught() -> ValueError:
    try:
        _fail_deep_inside()
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_an_exception_logged_with_exc_keeps_its_type_message_and_traceback(lines: io.StringIO) -> None:
    log.error("work failed", exc=_caught(), job_id="j1")
    [line] = _decoded(lines)
    assert line["msg"] == "work failed" and line["level"] == "ERROR" and line["job_id"] == "j1"
    assert line["error_type"] == "ValueError" and line["error"] == "bad value"
    assert line["stack"].startswith("Traceback (most recent call last):")
    assert "_fail_deep_inside" in line["stack"] and line["stack"].rstrip().endswith("ValueError: bad value")


def test_a_warning_keeps_its_traceback_too(lines: io.StringIO) -> None:
    log.warn("storage trouble", exc=_caught())
    [line] = _decoded(lines)
    assert line["level"] == "WARN" and "_fail_deep_inside" in line["stack"]


def test_fields_given_explicitly_are_not_overridden_by_the_exception(lines: io.StringIO) -> None:
    exc = _caught()
    log.error("slot crashed", exc=exc, error=repr(exc))
    [line] = _decoded(lines)
    assert line["error"] == "ValueError('bad value')" and line["error_type"] == "ValueError"


def test_a_line_without_an_exception_has_no_stack(lines: io.StringIO) -> None:
    log.info("all fine", n=1)
    [line] = _decoded(lines)
    assert "stack" not in line and "error_type" not in line and "request_id" not in line


def test_a_third_party_record_with_exc_info_keeps_its_traceback(lines: io.StringIO) -> None:
    try:
        _fail_deep_inside()
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    [line] = _decoded(lines)
    assert line["error_type"] == "ValueError" and "_fail_deep_inside" in line["stack"]


def test_lines_logged_inside_a_request_carry_its_id_and_only_there(lines: io.StringIO) -> None:
    with request_context("rid-1"):
        log.error("handler failed", exc=_caught())
        log.info("explicit id wins", request_id="other")
    log.info("after the request")
    inside, explicit, after = _decoded(lines)
    assert inside["request_id"] == "rid-1" and "stack" in inside
    assert explicit["request_id"] == "other"
    assert "request_id" not in after


def test_the_text_format_prints_the_stack_below_the_line() -> None:
    exc = _caught()
    record = logging.getLogger("ductile.test").makeRecord(
        "ductile.test", logging.ERROR, __file__, 1, "work failed", None, (ValueError, exc, exc.__traceback__),
        extra={"component": "test", "fields": {"job_id": "j1"}})
    first, *rest = TextFormatter().format(record).splitlines()
    assert first.endswith("ERROR [test] work failed job_id=j1 error_type=ValueError error=bad value")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: bad value"


def test_each_line_carries_its_own_second_and_millisecond() -> None:
    """The formatted second is reused between lines: a line in the next second must not keep it."""
    assert _timestamp(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"
    assert _timestamp(1_800_000_000.999) == "2027-01-15T08:00:00.999Z"
    assert _timestamp(1_800_000_001.0) == "2027-01-15T08:00:01.000Z"
    assert _timestamp(1_799_999_999.5) == "2027-01-15T07:59:59.500Z"
