"""operations.md §9 through the real ``/healthz`` route: the scheduler heartbeat is
``scheduler.last_tick_at``; a scheduler that stalls turns the answer ``degraded`` with
``late: true`` and the reason, and it returns to ``ok`` (no ``degraded`` key) once ticks resume."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from ductile.api.app import create_app
from ductile.api.auth import TokenSet
from ductile.app.facade import Ductile
from ductile.events.timefmt import now_ns, rfc3339
from ductile.runtime.services import Services


async def _empty_state(_work: Any) -> Any:
    return 0, []  # queue depth, open breakers


def _runtime(last_tick_ns: int | None) -> SimpleNamespace:
    """The runtime's live state, with the real lateness rule of ``Services``."""
    rt = SimpleNamespace(last_tick_ns=last_tick_ns, started=time.monotonic(), _late_logged=False, cluster=None,
                         shutting_down=False, posture="gateway", uptime_seconds=lambda: 1, read=_empty_state)
    rt.scheduler_lateness = lambda tick, now: Services.scheduler_lateness(rt, tick, now)  # type: ignore[arg-type]
    return rt


def _healthz(rt: SimpleNamespace, schedules: bool = True) -> dict[str, Any]:
    config = SimpleNamespace(api=SimpleNamespace(max_concurrent_sync=1, allowed_origins=[]),
                             service=SimpleNamespace(max_workers=1, tick_interval=1.0),
                             source=SimpleNamespace(root_file="c.yaml"))
    events = SimpleNamespace(on_commit=lambda _listener: None, head=0, unwritable=None)
    gateway = Ductile(config, SimpleNamespace(plugins={}), events, rt,  # type: ignore[arg-type]
                      schedule_specs=[object()] if schedules else None)  # type: ignore[list-item]
    app = create_app(gateway, rt, TokenSet([]))  # type: ignore[arg-type]

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get("/healthz")

    resp = asyncio.run(call())
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_fresh_tick_is_shown_and_ok() -> None:
    tick = now_ns() - 2_000_000_000
    body = _healthz(_runtime(tick))
    assert body["scheduler"] == {"last_tick_at": rfc3339(tick), "late": False}
    assert body["status"] == "ok" and "degraded" not in body


def test_a_stalled_scheduler_turns_healthz_degraded_with_late_true_then_ok_again(
        caplog: pytest.LogCaptureFixture) -> None:
    rt = _runtime(now_ns() - 45_000_000_000)  # past max(3 × 1s, 30s)
    body = _healthz(rt)
    assert body["scheduler"]["late"] is True
    assert body["status"] == "degraded"
    assert body["degraded"] == ["scheduler is late (last tick 45s ago)"]
    assert _healthz(rt)["status"] == "degraded"
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "scheduler is late" in r.getMessage()]
    assert len(warned) == 1, "one WARN line when lateness starts, not one per request"
    rt.last_tick_ns = now_ns()
    again = _healthz(rt)
    assert again["status"] == "ok" and "degraded" not in again and again["scheduler"]["late"] is False


def test_no_schedule_configured_gives_a_null_heartbeat() -> None:
    body = _healthz(_runtime(None), schedules=False)
    assert body["scheduler"] is None and body["status"] == "ok"
