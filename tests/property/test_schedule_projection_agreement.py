"""Property: random scheduler passes through the real log; the schedule projection equals the stream's fold.

The schedule decider reads its state back from the projection (``app_schedules.load_state``), so
the projection *is* what every later decision sees: it must equal the fold of the entry's stream.
The commands are the real units of work (``reconcile``, ``evaluate``, ``catch_up``, a job of the
entry run to its end, an operator breaker reset) on a clock the test moves. The reference reading
of the schedule events (scheduler.md §4–§9) is the decider's own ``evolve``, as for jobs and breakers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.app import jobs as app_jobs
from ductile.app import schedules as app_schedules
from ductile.app.schedules import EntrySettings
from ductile.commands import jobs, schedules
from ductile.commands.schedule_plan import Spec
from ductile.events import log as log_module
from ductile.events.log import WriteTx, read_stream
from ductile.events.types import (
    JobEnqueued,
    ScheduleFired,
    job_stream,
    schedule_stream,
)
from ductile.projections.registry import ALL, default_runner
from tests.stores import FreshStore

from .state_db import assert_rebuild_reproduces, fresh_log

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
TABLES = [t for p in ALL for t in p.tables]
IDS = ["s1", "s2"]
SETTINGS = EntrySettings(service_name="ductile", max_attempts=1, reset_after=20 * NS, dedupe_ttl=0)

# Entry variants for one id: changing kind/every/command re-plans; if_running does not.
VARIANTS: list[dict[str, Any]] = [
    {"kind": "every", "every": 10 * NS},
    {"kind": "every", "every": 10 * NS, "if_running": "cancel", "jitter": 3 * NS},
    {"kind": "every", "every": 25 * NS, "if_running": "queue", "max_outstanding": 2, "catch_up": "run_all"},
    {"kind": "every", "every": 10 * NS, "command": "sync", "catch_up": "run_once"},
    {"kind": "at", "at": T0 + 30 * NS},
    {"kind": "after", "after": 15 * NS},
    {"invalid_reason": "invalid_every", "invalid_detail": "every: must be positive"},
    {"invalid_reason": "invalid_cron", "invalid_detail": "cron: bad field"},
]


def spec(n: int, variant: int) -> Spec:
    return Spec(plugin="echo", id=IDS[n], index=n, **VARIANTS[variant])


kinds = st.sampled_from(["reconcile"] * 2 + ["evaluate"] * 6 + ["advance"] * 4 + ["catch_up", "run", "run", "reset"])


@st.composite
def commands(draw: st.DrawFn) -> tuple[tuple[str, int, int], float]:
    kind = draw(kinds)
    n = draw(st.integers(0, len(IDS) - 1))
    if kind in ("reconcile", "evaluate", "catch_up"):
        arg = draw(st.integers(0, len(VARIANTS) - 1))
    elif kind == "advance":
        n, arg = draw(st.integers(0, 40)), 0
    elif kind == "run":
        arg = draw(st.sampled_from([0, 0, 1, 2]))
    else:
        arg = draw(st.integers(0, 1))
    return (kind, n, arg), draw(st.floats(0, 0.999))


# Each plan starts with both entries planned from a valid variant, so that most passes find work.
starts = st.lists(st.integers(0, 5), min_size=len(IDS), max_size=len(IDS)).map(
    lambda variants: [(("reconcile", n, v), 0.5) for n, v in enumerate(variants)])
plans = st.tuples(starts, st.lists(commands(), min_size=1, max_size=40)).map(lambda p: p[0] + p[1])


def run_one(n: int, outcome: int):
    """Claim the entry's oldest queued job and end it: 0 succeeded, 1 failed, 2 timed out."""

    def work(tx: WriteTx) -> None:
        row = tx.cur.execute(
            "SELECT s.job_id FROM schedule_jobs s JOIN job_queue q USING (job_id) WHERE s.plugin='echo'"
            " AND s.schedule_id=? AND q.status='queued' ORDER BY q.created_ns, q.enqueue_position LIMIT 1",
            (IDS[n],)).fetchone()
        if row is None:
            return
        app_jobs.apply(tx, jobs.ClaimJob(job_id=row[0], config_snapshot_id=None))
        job = app_jobs.load_job(tx.cur, row[0], tx)
        assert job is not None
        result = jobs.AttemptResult(outcome=[jobs.OK, jobs.ERROR, jobs.TIMEOUT][outcome], error="no",
                                    result='{"status":"ok"}' if outcome == 0 else None)
        app_jobs.apply(tx, jobs.CompleteAttempt(job_id=row[0], attempt=job.attempt, result=result, backoff_base=NS))

    return work


def unit(kind: str, n: int, arg: int, draw: float) -> Callable[[WriteTx], object]:
    if kind == "run":
        return run_one(n, arg)
    if kind == "reset":
        return lambda tx: app_schedules.reset_breaker(tx, "echo", ("poll", "sync")[arg])
    entry = spec(n, arg)
    if kind == "reconcile":
        return lambda tx: app_schedules.reconcile(tx, entry, draw)
    if kind == "evaluate":
        return lambda tx: app_schedules.evaluate(tx, entry, SETTINGS, draw)
    return lambda tx: app_schedules.catch_up(tx, entry, SETTINGS, draw, NS)


async def scenario(plan: list[tuple[tuple[str, int, int], float]], fresh_store: FreshStore) -> None:
    clock = [T0]
    with mock.patch.object(log_module, "now_ns", lambda: clock[0]):
        async with fresh_log("normal", default_runner(), store=fresh_store) as log:
            for (kind, n, arg), draw in plan:
                clock[0] += 1_000  # every pass at its own instant, as on a real clock
                if kind == "advance":
                    clock[0] += n * NS // 2 + arg
                else:
                    await log.submit(unit(kind, n, arg, draw))
            conn = log.reader()
            for sid in IDS:
                check_entry(conn, sid)
            conn.close()
            stored = log.store
            await log.aclose()
            assert_rebuild_reproduces(stored, TABLES)


def check_entry(conn, sid: str) -> None:
    events = [r.event for r in read_stream(conn, schedule_stream("echo", sid))]
    assert app_schedules.load_state(conn.cursor(), "echo", sid) == schedules.fold(events)
    # schedule_jobs holds exactly the entry's outstanding jobs, with their status.
    outstanding = {}
    for fired in (e for e in events if isinstance(e, ScheduleFired)):
        stream = [r.event for r in read_stream(conn, job_stream(fired.job_id))]
        assert isinstance(stream[0], JobEnqueued) and stream[0].schedule_id == sid
        job = jobs.fold(stream)
        assert job is not None
        if job.status in jobs.OUTSTANDING:
            outstanding[fired.job_id] = job.status
    rows = conn.execute("SELECT job_id, status FROM schedule_jobs WHERE plugin='echo' AND schedule_id=?", (sid,))
    assert dict(rows.fetchall()) == outstanding


def test_schedule_projection_equals_the_fold_of_every_schedule_stream(fresh_store):
    @settings(max_examples=fresh_store.examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plan=plans)
    def run(plan) -> None:
        asyncio.run(scenario(plan, fresh_store))

    run()
