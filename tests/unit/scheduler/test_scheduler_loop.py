"""The scheduler loop over a real event log (scheduler.md §4): it wakes for due entries between
ticks, but an entry that is due yet blocked must not turn the loop into a busy poll."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ductile.events.log import EventLog
from ductile.projections.registry import default_runner
from ductile.runtime.scheduler import Scheduler, SystemClock

PLUGIN = "inbox"


def window_away_from_now() -> str:
    """A one-hour UTC window twelve hours from now: the entry is always outside it."""
    start = (time.gmtime().tm_hour + 12) % 24
    return f"{start:02d}:00-{(start + 1) % 24:02d}:00"


def scheduler(log: EventLog, schedules: list[dict[str, Any]], on_tick: Any) -> Scheduler:
    config = SimpleNamespace(service=SimpleNamespace(tick_interval=60.0, name="ductile", dedupe_ttl=86400.0))
    entry = SimpleNamespace(schedules=schedules, max_outstanding_polls=1, retry=SimpleNamespace(max_attempts=1),
                            circuit_breaker=SimpleNamespace(reset_after=1800.0))
    manifest = SimpleNamespace(commands=[SimpleNamespace(name="poll")])
    catalog = SimpleNamespace(plugins={PLUGIN: SimpleNamespace(entry=entry, manifest=manifest)})
    return Scheduler(log, config, catalog, clock=SystemClock(), on_tick=on_tick)  # type: ignore[arg-type]


async def count_ticks(db: Path, schedules: list[dict[str, Any]], seconds: float, enough: int) -> tuple[int, int]:
    """Run the loop until ``enough`` ticks or ``seconds`` pass: (ticks, decided occurrences)."""
    log = EventLog(db, "normal", default_runner())
    await log.open()
    ticks: list[int] = []

    async def on_tick(now: int) -> None:
        ticks.append(now)

    sched = scheduler(log, schedules, on_tick)
    task = asyncio.create_task(sched.run())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(ticks) < enough and not task.done():
        await asyncio.sleep(0.02)
    sched.stop()
    await task
    sched.close()
    reader = log.reader()
    decided = reader.execute("SELECT COUNT(*) FROM events WHERE type IN ('ScheduleFired', 'ScheduleSkipped')"
                             ).fetchone()[0]
    reader.close()
    await log.aclose()
    return len(ticks), decided


def test_the_loop_wakes_for_a_due_entry_long_before_the_tick_interval(tmp_path: Path) -> None:
    # No dispatcher runs the jobs, so after the first fire each occurrence is skipped (already_running).
    ticks, decided = asyncio.run(count_ticks(tmp_path / "state.db", [{"id": "fast", "every": "200ms"}], 10, 4))
    assert ticks >= 4 and decided >= 3  # tick_interval is 60 s


def test_an_entry_blocked_by_its_window_does_not_make_the_loop_spin(tmp_path: Path) -> None:
    schedules = [{"id": "night", "every": "1h", "only_between": window_away_from_now(), "timezone": "UTC"}]
    ticks, decided = asyncio.run(count_ticks(tmp_path / "state.db", schedules, 1.0, 10))
    assert decided == 1  # one outside_time_window skip, announced once
    assert ticks <= 2  # the first pass, then one per tick_interval (60 s)


def test_an_undeterminable_host_zone_falls_back_to_utc_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ductile.runtime.scheduler as runtime

    monkeypatch.setattr(runtime, "host_timezone", lambda *a, **k: ("UTC", False))
    with caplog.at_level(logging.WARNING, logger="ductile.scheduler"):
        sched = scheduler(None, [{"id": "e", "every": "5m"}], None)  # type: ignore[arg-type]
    assert sched.specs[0].timezone == "UTC"
    assert any(r.levelno == logging.WARNING and "UTC" in r.getMessage() for r in caplog.records)



def test_a_catch_up_run_dropped_by_dedupe_is_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import uuid

    from ductile.app import jobs
    from ductile.commands.jobs import EnqueueJob
    from ductile.commands.schedule_plan import rfc3339_seconds
    from ductile.events.types import SchedulePlanned, schedule_stream

    hour = 3600 * 1_000_000_000
    holder = str(uuid.uuid4())
    schedules = [{"id": "h", "every": "1h", "catch_up": "run_all"}]

    async def scenario() -> str:
        log = EventLog(tmp_path / "state.db", "normal", default_runner())
        await log.open()
        try:
            sched = scheduler(log, schedules, None)
            spec = sched.specs[0]

            def planned_and_held(tx: Any) -> str:
                # The gateway planned the entry 2.5 h ago and went down; the run of that first slot
                # is already outstanding (say, enqueued by an earlier catch-up).
                slot = tx.now - 2 * hour - hour // 2
                tx.append(schedule_stream(PLUGIN, "h"), [SchedulePlanned(
                    plugin=PLUGIN, schedule_id="h", plan_key=spec.plan_key, command="poll", mode=spec.kind,
                    timezone=spec.timezone, next_slot_at=slot, next_run_at=slot, first_seen_at=slot,
                    reason="first_sighting", at=slot)])
                key = f"{spec.dedupe_key}:catchup:{rfc3339_seconds(slot)}"
                jobs.enqueue(tx, EnqueueJob(job_id=holder, plugin=PLUGIN, command="poll", payload={},
                                                 submitted_by="ductile", max_attempts=1, dedupe_key=key,
                                                 dedupe_ttl=hour, schedule_id="h"))
                return key

            key = await log.submit(planned_and_held)
            await sched.start()  # boot: catch-up of the three missed slots
            return key
        finally:
            await log.aclose()

    with caplog.at_level(logging.INFO, logger="ductile.scheduler"):
        key = asyncio.run(scenario())
    drops = [r for r in caplog.records if r.getMessage() == "job deduped"]
    assert [(r.levelno, r.fields["dedupe_key"], r.fields["existing_job_id"], r.fields["dedupe_reason"])
            for r in drops] == [(logging.INFO, key, holder, "outstanding")]
    assert len([r for r in caplog.records if r.getMessage() == "Enqueued scheduled job"]) == 2
