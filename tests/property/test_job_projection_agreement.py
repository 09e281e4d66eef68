"""Property: random job commands through the real log; the SQL projections equal the in-memory fold.

Commands are decided by ``ductile.commands.jobs.decide`` inside the writer's unit of work, from the
job's stream as the log holds it, and appended at that stream version; refused commands raise
``Refused`` and leave nothing behind. Commands run in concurrent waves so that they share batches.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.commands.jobs import (
    ERROR,
    OK,
    SPAWN_ERROR,
    TERMINAL,
    TIMEOUT,
    AttemptResult,
    ClaimJob,
    Command,
    CompleteAttempt,
    EnqueueJob,
    JobState,
    KillJob,
    RecoverJob,
    SkipJob,
    decide,
    evolve,
)
from ductile.events.log import NO_STREAM, WriteTx, read_stream
from ductile.events.timefmt import sql_ts
from ductile.events.types import JOB_EVENTS, EventBase, JobStarted, job_stream
from ductile.projections.registry import ALL, default_runner
from tests.stores import FreshStore

from .state_db import assert_rebuild_reproduces, fresh_log, submit_wave

NS = 1_000_000_000
JOBS = 4
TABLES = [t for p in ALL for t in p.tables]

complete_spec = st.fixed_dictionaries(
    {
        "outcome": st.sampled_from([OK, OK, ERROR, ERROR, TIMEOUT, SPAWN_ERROR]),
        "exit_code": st.sampled_from([None, 0, 1, 1, 2, 78]),
        "plugin_retry": st.sampled_from([True, True, True, False]),
        "permanent_reason": st.sampled_from([None] * 5 + ["invalid_response"]),
        "attempt_delta": st.sampled_from([0, 0, 0, 0, -1, 1]),
        "jitter": st.floats(0, 0.999),
    }
)
kinds = st.sampled_from(["enqueue"] * 3 + ["claim"] * 5 + ["complete"] * 6 + ["recover", "kill", "skip"])


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, int, Any]:
    kind = draw(kinds)
    job = draw(st.integers(0, JOBS - 1))
    spec: Any = None
    if kind == "enqueue":
        spec = draw(st.integers(1, 3))
    elif kind == "complete":
        spec = draw(complete_spec)
    return kind, job, spec


waves = st.lists(st.lists(commands(), min_size=1, max_size=8), min_size=1, max_size=12)


def job_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def build(kind: str, jid: str, spec: Any, job: JobState | None, seq: int) -> Command:
    if kind == "enqueue":
        return EnqueueJob(
            job_id=jid,
            plugin="echo",
            command="poll",
            payload={"seq": seq},
            submitted_by="api",
            max_attempts=spec,
        )
    if kind == "claim":
        return ClaimJob(job_id=jid, config_snapshot_id=f"cfg-{seq}")
    if kind == "complete":
        result = AttemptResult(
            outcome=spec["outcome"],
            error=f"{spec['outcome']} in command {seq}",
            result=f'{{"seq":{seq}}}',
            exit_code=spec["exit_code"],
            duration_ms=seq,
            stderr=f"e{seq}",
            plugin_retry=spec["plugin_retry"],
            permanent_reason=spec["permanent_reason"],
        )
        attempt = (job.attempt if job else 1) + spec["attempt_delta"]
        return CompleteAttempt(
            job_id=jid, attempt=attempt, result=result, backoff_base=NS, jitter=spec["jitter"]
        )
    if kind == "recover":
        return RecoverJob(job_id=jid)
    if kind == "kill":
        return KillJob(job_id=jid, reason="cancelled by scheduler (if_running=cancel)", error=f"killed {seq}")
    return SkipJob(job_id=jid)


def unit(kind: str, jid: str, spec: Any, seq: int, now: int):
    def work(tx: WriteTx) -> list[EventBase]:
        stream = job_stream(jid)
        history = read_stream(tx.conn, stream)
        job: JobState | None = None
        for rec in history:
            job = evolve(job, rec.event)
        events = decide(build(kind, jid, spec, job, seq), job, now)
        tx.append(stream, events, expected=len(history) or NO_STREAM)
        return events

    return work


def one(conn, sql: str, *params) -> tuple | None:
    return conn.execute(sql, params).fetchone()


def check_job(conn, jid: str, accepted: list[EventBase]) -> None:
    events = [r.event for r in read_stream(conn, job_stream(jid))]
    assert events == accepted
    if not events:
        assert one(conn, "SELECT 1 FROM job_queue WHERE job_id=?", jid) is None
        return
    job: JobState | None = None
    for e in events:
        job = evolve(job, e)  # the log never holds a stream the state machine refuses
    assert job is not None

    row = one(
        conn,
        "SELECT status, attempt, max_attempts, last_error, completed_at, started_at, next_retry_at,"
        " result, created_at FROM job_queue WHERE job_id=?",
        jid,
    )
    assert row == (
        job.status,
        job.attempt,
        job.max_attempts,
        job.last_error,
        sql_ts(job.completed_at),
        sql_ts(job.started_at),
        sql_ts(job.next_retry_at),
        job.result,
        sql_ts(job.created_at),
    )

    transitions = conn.execute(
        "SELECT from_status, to_status FROM job_transitions WHERE job_id=? ORDER BY id", (jid,)
    ).fetchall()
    assert len(transitions) == len(events)
    assert transitions[0] == (None, "queued")
    for before, after in itertools.pairwise(transitions):
        assert after[0] == before[1]
    assert transitions[-1][1] == job.status

    attempts = [
        a for (a,) in conn.execute("SELECT attempt FROM job_attempts WHERE job_id=? ORDER BY id", (jid,))
    ]
    assert attempts == [e.attempt for e in events if isinstance(e, JobStarted)]

    logged = conn.execute(
        "SELECT status, attempt, completed_ns, last_error FROM job_log WHERE job_id=?", (jid,)
    ).fetchall()
    pending = one(conn, "SELECT 1 FROM ledger_jobs WHERE job_id=?", jid)
    if job.status in TERMINAL:
        assert len(logged) == 1
        status, attempt, completed_ns, last_error = logged[0]
        assert (status, completed_ns, last_error) == (job.status, job.completed_at, job.last_error)
        assert attempt == job.attempt
        assert pending is None
    else:
        assert logged == []
        assert pending is not None


async def scenario(plan: list[list[tuple[str, int, Any]]], fresh_store: FreshStore) -> None:
    accepted: dict[str, list[EventBase]] = {job_id(n): [] for n in range(JOBS)}
    seq = 0
    async with fresh_log("normal", default_runner(), store=fresh_store) as log:
        for wave in plan:
            units = []
            for kind, n, spec in wave:
                seq += 1
                units.append((job_id(n), unit(kind, job_id(n), spec, seq, seq * NS)))
            await submit_wave(log, units, accepted)
        conn = log.reader()
        for jid, events in accepted.items():
            check_job(conn, jid, events)
        job_events = conn.execute(
            f"SELECT COUNT(*) FROM events WHERE type IN ({','.join('?' * len(JOB_EVENTS))})",
            [cls.__name__ for cls in JOB_EVENTS],
        ).fetchone()[0]
        assert one(conn, "SELECT COUNT(*) FROM job_transitions") == (job_events,)
        conn.close()
        stored = log.store
        await log.aclose()
        assert_rebuild_reproduces(stored, TABLES)


def test_job_projections_equal_the_fold_of_every_job_stream(fresh_store):
    @settings(max_examples=fresh_store.examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plan=waves)
    def run(plan) -> None:
        asyncio.run(scenario(plan, fresh_store))

    run()
