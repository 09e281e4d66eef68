"""Claiming against a real event log: lanes never stall each other, whatever the backlog (jobs.md §5)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ductile.app import jobs
from ductile.app.jobs import ClaimedJob
from ductile.commands.jobs import DedupeView, EnqueueJob, decide_enqueue
from ductile.events.log import EventLog, WriteTx
from ductile.events.timefmt import parse_rfc3339, rfc3339
from ductile.projections.registry import default_runner

BACKLOG = 10_000
LANES = {"serial": 1, "other": 4}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    opened = EventLog(tmp_path / "state.db", "normal", default_runner()).open_sync()
    try:
        yield opened
    finally:
        opened.close()


def _job(plugin: str, dedupe_key: str | None = None) -> EnqueueJob:
    return EnqueueJob(job_id=str(uuid.uuid4()), plugin=plugin, command="poll", payload={}, submitted_by="test",
                      max_attempts=1, dedupe_key=dedupe_key)


def _enqueue(log: EventLog, *cmds: EnqueueJob) -> None:
    def work(tx: WriteTx) -> None:
        for cmd in cmds:
            jobs.enqueue(tx, cmd)

    log.submit_sync(work)


def _claim(log: EventLog, max_workers: int = 4, statements: list[str] | None = None) -> list[ClaimedJob]:
    def work(tx: WriteTx) -> list[ClaimedJob]:
        if statements is not None:
            tx.conn.set_trace_callback(statements.append)
        try:
            return jobs.claim_next(tx, max_workers, LANES, lambda _plugin, _command: None)[0]
        finally:
            tx.conn.set_trace_callback(None)

    return log.submit_sync(work)


def test_a_full_serial_lane_with_a_deep_backlog_does_not_stall_another_plugin(log: EventLog) -> None:
    _enqueue(log, *(_job("serial") for _ in range(BACKLOG)))
    other = _job("other")
    _enqueue(log, other)

    claimed = _claim(log)

    # The serial lane takes its oldest job and is then full; the other plugin's job starts at once.
    assert [j.plugin for j in claimed] == ["serial", "other"]
    assert claimed[1].job_id == other.job_id
    assert _claim(log) == []  # serial lane full, nothing else queued


def test_claim_queries_use_indexes_only(log: EventLog) -> None:
    _enqueue(log, *(_job("serial") for _ in range(200)), *(_job("other", dedupe_key=f"k{i}") for i in range(5)))
    statements: list[str] = []
    assert len(_claim(log, statements=statements)) == 4

    reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert any("job_queue" in s for s in reads)
    reader = log.reader()
    try:
        for sql in reads:
            plan = [row[3] for row in reader.execute(f"EXPLAIN QUERY PLAN {sql}")]
            # Reading the recursive CTE of lanes (or a constant row) is not a table scan.
            scans = [step for step in plan if step.startswith("SCAN") and step != "SCAN CONSTANT ROW"
                     and not step.startswith("SCAN lane")]
            assert scans == [], (sql, plan)
    finally:
        reader.close()


def test_claim_order_is_oldest_first_across_lanes_and_skips_running_duplicates(log: EventLog) -> None:
    first, dup, third = _job("other", dedupe_key="k"), _job("other", dedupe_key="k"), _job("serial")
    # ``dup`` shares the triple of ``first``: enqueue it behind the outstanding check, as a
    # scheduler occurrence would (regular occurrences are exempt from enqueue dedupe).
    _enqueue(log, first)
    log.submit_sync(lambda tx: tx.append(f"job-{dup.job_id}", decide_enqueue(
        dup, None, DedupeView(), tx.now)))
    fourth = _job("other")
    _enqueue(log, third, fourth)

    claimed = _claim(log)

    assert [j.job_id for j in claimed] == [first.job_id, third.job_id, fourth.job_id]


def test_a_claimed_job_carries_its_creation_instant_as_the_job_state_does(log: EventLog) -> None:
    """Issue 10: ``ClaimedJob.created_at`` was the text column while ``JobState.created_at`` is Unix
    ns; both are ns now, and the text column is the same instant (``handle`` events show it)."""
    cmd = _job("other")
    _enqueue(log, cmd)
    (claimed,) = _claim(log)
    conn = log.reader()
    try:
        state = jobs.load_job(conn, cmd.job_id)
        (text,) = conn.execute("SELECT created_at FROM job_queue WHERE job_id=?", (cmd.job_id,)).fetchone()
    finally:
        conn.close()
    assert state is not None
    assert isinstance(claimed.created_at, int) and claimed.created_at == state.created_at
    assert rfc3339(claimed.created_at) == rfc3339(parse_rfc3339(text))
