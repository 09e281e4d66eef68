"""A fault behind an API route is answered with the spec's error body and logged once, with its
traceback and the request id that the answer's X-Request-ID carries (issue 10 item 6)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest

from ductile.api.app import access_log, create_app
from ductile.api.auth import TokenSet
from ductile.app.facade import Ductile
from ductile.system.logs import JsonFormatter


def _services(**overrides: Any) -> SimpleNamespace:
    """The facade's collaborators and the runtime's live state, faked: ``read`` is the read path."""
    config = SimpleNamespace(api=SimpleNamespace(max_concurrent_sync=1, allowed_origins=[]),
                             service=SimpleNamespace(max_workers=1), source=SimpleNamespace(root_file="c.yaml"))
    events = SimpleNamespace(on_commit=lambda _listener: None, head=0, unwritable=None)
    defaults: dict[str, Any] = {"uptime_seconds": lambda: 1, "catalog": SimpleNamespace(plugins={}),
                                "posture": "ok", "cluster": None}
    return SimpleNamespace(config=config, events=events, shutting_down=False, **{**defaults, **overrides})


def _get(services: SimpleNamespace, path: str, headers: dict[str, str]) -> httpx.Response:
    gateway = Ductile(services.config, services.catalog, services.events, services)  # type: ignore[arg-type]
    app = access_log(create_app(gateway, services, TokenSet([])))  # type: ignore[arg-type]

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


def _errors(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [msgspec.json.decode(JsonFormatter().format(r)) for r in caplog.records if r.levelno >= logging.ERROR]


async def _unreadable_state(_work: Any) -> Any:
    raise sqlite3.OperationalError("disk I/O error")


async def _empty_state(_work: Any) -> Any:
    return 0, []  # queue depth, open breakers


def test_a_handled_fault_is_logged_once_with_its_stack_and_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    services = _services(read=_unreadable_state)
    resp = _get(services, "/healthz", {"X-Request-ID": "rid-health"})
    assert resp.status_code == 500 and resp.json() == {"error": "failed to compute queue depth"}
    assert resp.headers["x-request-id"] == "rid-health"
    [line] = _errors(caplog)
    assert line["msg"] == "failed to compute queue depth" and line["request_id"] == "rid-health"
    assert line["error_type"] == "OperationalError" and line["error"] == "disk I/O error"
    assert "_unreadable_state" in line["stack"]


def test_an_unexpected_fault_is_logged_once_with_more_than_its_type(caplog: pytest.LogCaptureFixture) -> None:
    def uptime_seconds() -> int:
        raise RuntimeError("clock gone")

    services = _services(read=_empty_state, uptime_seconds=uptime_seconds,
                         catalog=SimpleNamespace(plugins={}), posture="ok")
    resp = _get(services, "/healthz", {})
    assert resp.status_code == 500 and resp.json() == {"error": "internal error"}
    request_id = resp.headers["x-request-id"]  # generated, since the client sent none
    [line] = _errors(caplog)
    assert line["msg"] == "unhandled API error" and line["request_id"] == request_id
    assert line["method"] == "GET" and line["path"] == "/healthz"
    assert line["error_type"] == "RuntimeError" and line["error"] == "clock gone"
    assert "uptime_seconds" in line["stack"]
