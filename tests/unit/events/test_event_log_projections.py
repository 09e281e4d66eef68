"""Conformance: projections move with the log (same transaction), catch up, rebuild and prune."""

from __future__ import annotations

import copy

import pytest

from ductile.commands.jobs import (
    ERROR,
    OK,
    TIMEOUT,
    AttemptResult,
    ClaimJob,
    CompleteAttempt,
    EnqueueJob,
    KillJob,
    RecoverJob,
    SkipJob,
)
from ductile.events.log import WriteTx, read_rows, read_stream
from ductile.events.timefmt import sql_ts
from ductile.events.types import PluginFactAppended, PluginStateChanged, ProjectionsPruned, job_stream
from ductile.projections import ledger, plugin_state, queue
from ductile.projections.registry import ALL, default_runner
from ductile.projections.runner import ProjectionRunner, UnknownProjection
from tests.stores import table_names

from .samples import NS, decide_and_append, enqueued, job_id, run_command, snapshot

pytestmark = pytest.mark.anyio

TABLES = [t for p in ALL for t in p.tables]


def enqueue(n: int, max_attempts: int = 3) -> EnqueueJob:
    return EnqueueJob(
        job_id=job_id(n),
        plugin="echo",
        command="poll",
        payload={"n": n},
        submitted_by="api",
        max_attempts=max_attempts,
    )


def complete(
    n: int, attempt: int, outcome: str = OK, retry: bool = True, exit_code: int | None = 0
) -> CompleteAttempt:
    result = AttemptResult(
        outcome=outcome,
        error="" if outcome == OK else f"{outcome} on attempt {attempt}",
        result='{"status":"ok"}' if outcome == OK else None,
        exit_code=exit_code,
        duration_ms=10 * attempt,
        stderr="warn" if outcome != OK else "",
        plugin_retry=retry,
    )
    return CompleteAttempt(job_id=job_id(n), attempt=attempt, result=result, backoff_base=NS)


async def job_history(log, first: int, t0: int) -> None:
    """Drive ten jobs (numbers ``first`` .. ``first + 9``) down every path of the state machine."""
    clock = iter(range(t0, t0 + 1000 * NS, NS))

    async def run(cmd) -> None:
        await run_command(log, cmd, next(clock))

    j = first
    paths = {
        "succeeded": [enqueue(j), ClaimJob(job_id=job_id(j)), complete(j, 1)],
        "retried then succeeded": [
            enqueue(j + 1),
            ClaimJob(job_id=job_id(j + 1)),
            complete(j + 1, 1, ERROR, exit_code=1),
            ClaimJob(job_id=job_id(j + 1)),
            complete(j + 1, 2),
        ],
        "failed permanently": [
            enqueue(j + 2),
            ClaimJob(job_id=job_id(j + 2)),
            complete(j + 2, 1, ERROR, retry=False),
        ],
        "timed out, exhausted": [
            enqueue(j + 3, max_attempts=1),
            ClaimJob(job_id=job_id(j + 3)),
            complete(j + 3, 1, TIMEOUT, exit_code=None),
        ],
        "recovered then succeeded": [
            enqueue(j + 4),
            ClaimJob(job_id=job_id(j + 4)),
            RecoverJob(job_id=job_id(j + 4)),
            ClaimJob(job_id=job_id(j + 4)),
            complete(j + 4, 2),
        ],
        "dead in recovery": [
            enqueue(j + 5, max_attempts=1),
            ClaimJob(job_id=job_id(j + 5)),
            RecoverJob(job_id=job_id(j + 5)),
        ],
        "killed while queued": [
            enqueue(j + 6),
            KillJob(job_id=job_id(j + 6), reason="plugin_unavailable", error="gone"),
        ],
        "skipped": [enqueue(j + 7), SkipJob(job_id=job_id(j + 7))],
        "still queued": [enqueue(j + 8)],
        "still running": [enqueue(j + 9), ClaimJob(job_id=job_id(j + 9))],
    }
    for cmds in paths.values():
        for cmd in cmds:
            await run(cmd)
    await log.append(
        "plugin-echo",
        [PluginStateChanged(plugin="echo", state={"cursor": first}, job_id=job_id(j), at=next(clock))],
    )
    await log.append(
        "plugin-echo",
        [
            PluginFactAppended(
                plugin="echo",
                seq=first,
                fact_type="seen",
                fact={"n": first},
                job_id=job_id(j),
                command="poll",
                at=next(clock),
            )
        ],
    )


def rows(conn, sql: str, *params) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


async def test_enqueue_claim_succeed_is_projected_into_queue_and_ledger(open_log):
    log = await open_log(default_runner())
    jid = job_id(1)
    conn = log.reader()

    await run_command(log, enqueue(1), NS)
    assert rows(
        conn,
        "SELECT status, attempt, max_attempts, plugin, command, payload, created_at, enqueue_position"
        " FROM job_queue WHERE job_id=?",
        jid,
    ) == [("queued", 1, 3, "echo", "poll", '{"n":1}', sql_ts(NS), 1)]
    assert rows(conn, "SELECT from_status, to_status FROM job_transitions WHERE job_id=?", jid) == [
        (None, "queued")
    ]
    assert rows(conn, "SELECT job_id FROM ledger_jobs") == [(jid,)]
    assert rows(conn, "SELECT * FROM job_attempts") == []

    await run_command(log, ClaimJob(job_id=jid, config_snapshot_id="cfg-1"), 2 * NS)
    assert rows(conn, "SELECT status, attempt, started_at, started_config_snapshot_id FROM job_queue") == [
        ("running", 1, sql_ts(2 * NS), "cfg-1")
    ]
    assert rows(conn, "SELECT job_id, attempt, created_at, completed_at, outcome FROM job_attempts") == [
        (jid, 1, sql_ts(2 * NS), None, None)
    ]

    await run_command(log, complete(1, 1), 3 * NS)
    assert rows(conn, "SELECT status, completed_at, result, last_error FROM job_queue") == [
        ("succeeded", sql_ts(3 * NS), '{"status":"ok"}', None)
    ]
    assert rows(
        conn,
        "SELECT id, job_id, status, attempt, result, submitted_by, created_at, completed_at, last_error"
        " FROM job_log",
    ) == [(f"{jid}-1", jid, "succeeded", 1, '{"status":"ok"}', "api", sql_ts(NS), sql_ts(3 * NS), None)]
    assert rows(conn, "SELECT outcome, exit_code, duration_ms, completed_at FROM job_attempts") == [
        ("ok", 0, 10, sql_ts(3 * NS))
    ]
    assert rows(conn, "SELECT from_status, to_status FROM job_transitions ORDER BY id") == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert rows(conn, "SELECT * FROM ledger_jobs") == []
    conn.close()


async def test_retry_then_exhaustion_is_projected(open_log):
    log = await open_log(default_runner())
    jid = job_id(2)
    conn = log.reader()
    await run_command(log, enqueue(2, max_attempts=2), NS)
    await run_command(log, ClaimJob(job_id=jid), 2 * NS)
    await run_command(log, complete(2, 1, ERROR, exit_code=1), 3 * NS)
    status, attempt, next_retry_ns, last_error = rows(
        conn, "SELECT status, attempt, next_retry_ns, last_error FROM job_queue"
    )[0]
    assert (status, attempt, last_error) == ("queued", 2, "error on attempt 1")
    assert next_retry_ns >= 4 * NS
    await run_command(log, ClaimJob(job_id=jid), 5 * NS)
    await run_command(log, complete(2, 2, ERROR, exit_code=1), 6 * NS)
    assert rows(conn, "SELECT status, attempt, last_error FROM job_queue") == [
        ("failed", 2, "error on attempt 2")
    ]
    assert rows(conn, "SELECT id, status, attempt FROM job_log") == [(f"{jid}-2", "failed", 2)]
    assert rows(conn, "SELECT attempt, outcome, exit_code FROM job_attempts ORDER BY attempt") == [
        (1, "error", 1),
        (2, "error", 1),
    ]
    conn.close()



async def test_the_job_log_row_keeps_the_snapshot_of_the_last_start(open_log):
    """A retried job started under two config snapshots: its ledger row names the last one, and a
    job that ends without ever starting names none."""
    log = await open_log(default_runner())
    conn = log.reader()
    jid = job_id(3)
    await run_command(log, enqueue(3, max_attempts=2), NS)
    await run_command(log, ClaimJob(job_id=jid, config_snapshot_id="cfg-1"), 2 * NS)
    await run_command(log, complete(3, 1, ERROR, exit_code=1), 3 * NS)
    await run_command(log, ClaimJob(job_id=jid, config_snapshot_id="cfg-2"), 5 * NS)
    await run_command(log, complete(3, 2), 6 * NS)
    await run_command(log, enqueue(4), 7 * NS)
    await run_command(log, KillJob(job_id=job_id(4), reason="cancelled", error="cancelled by test"), 8 * NS)
    assert rows(conn, "SELECT job_id, status, started_config_snapshot_id FROM job_log ORDER BY completed_ns") == [
        (jid, "succeeded", "cfg-2"),
        (job_id(4), "dead", None),
    ]
    conn.close()

async def test_projection_writes_roll_back_with_their_unit(open_log):
    log = await open_log(default_runner())

    def enqueue_then_fail(tx: WriteTx) -> None:
        tx.append(job_stream(job_id(1)), [enqueued(job_id(1))])
        raise RuntimeError("refused after appending")

    with pytest.raises(RuntimeError):
        await log.submit(enqueue_then_fail)
    await run_command(log, enqueue(2), NS)
    conn = log.reader()
    assert rows(conn, "SELECT job_id, enqueue_position FROM job_queue") == [(job_id(2), 1)]
    assert rows(conn, "SELECT job_id FROM job_transitions") == [(job_id(2),)]
    conn.close()


async def test_checkpoints_move_with_every_commit(open_log):
    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    conn = log.reader()
    assert rows(conn, "SELECT name, version, position FROM projections ORDER BY name") == [
        (p.name, p.version, log.head) for p in sorted(ALL, key=lambda p: p.name)
    ]
    conn.close()


async def test_a_projection_behind_the_log_catches_up_on_open(open_log, db_path):
    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    await log.aclose()
    # A process that appends without projections leaves the checkpoints behind the head.
    bare = await open_log()
    await job_history(bare, 100, 1000 * NS)
    await bare.aclose()
    log = await open_log(default_runner())
    conn = log.reader()
    assert rows(conn, "SELECT COUNT(*) FROM job_queue") == [(20,)]
    assert {pos for (pos,) in rows(conn, "SELECT position FROM projections")} == {log.head}
    conn.close()
    applied = {r.name: r.events_applied for r in log.projections.last_reports}
    assert applied["queue"] > 0 and applied["ledger"] > 0 and applied["plugin_state"] == 2


async def test_a_projection_whose_version_changed_is_dropped_and_rebuilt(open_log, store, durability):
    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    await log.aclose()
    conn = store.open_writer(durability)
    expected = snapshot(conn, TABLES)
    conn.execute("DELETE FROM job_queue WHERE job_id = ?", (job_id(0),))
    conn.execute("UPDATE job_queue SET status = 'bogus'")
    conn.execute("DELETE FROM job_log")
    conn.close()

    bumped = copy.copy(queue.PROJECTION)
    bumped.version = queue.PROJECTION.version + 1
    runner = ProjectionRunner([bumped, ledger.PROJECTION, plugin_state.PROJECTION])
    log = await open_log(runner)
    conn = log.reader()
    # The queue was rebuilt from position 0; the ledger kept its (tampered) rows: it was not touched.
    assert snapshot(conn, ["job_queue"]) == {"job_queue": expected["job_queue"]}
    assert rows(conn, "SELECT COUNT(*) FROM job_log") == [(0,)]
    assert rows(conn, "SELECT version, position FROM projections WHERE name = 'queue'") == [
        (bumped.version, log.head)
    ]
    queue_events = sum(1 for r in read_rows(conn) if type(r.event) in queue.PROJECTION.handlers)
    conn.close()
    applied = {r.name: r.events_applied for r in runner.last_reports}
    assert applied["queue"] == queue_events
    assert applied["ledger"] == 0 and applied["plugin_state"] == 0

    await log.aclose()
    again = ProjectionRunner([bumped, ledger.PROJECTION, plugin_state.PROJECTION])
    await open_log(again)
    assert all(r.events_applied == 0 for r in again.last_reports)


async def test_rebuild_reproduces_identical_tables(open_log, store, durability):
    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    await job_history(log, 100, 500 * NS)
    await log.aclose()
    conn = store.open_writer(durability)
    before = snapshot(conn, TABLES)
    conn.execute("DELETE FROM job_log")
    conn.execute("UPDATE job_queue SET attempt = attempt + 7")
    conn.execute("DELETE FROM plugin_state")

    reports = default_runner().rebuild(conn)

    assert snapshot(conn, TABLES) == before
    assert sorted(r.name for r in reports) == sorted(p.name for p in ALL)
    head = conn.execute("SELECT MAX(position) FROM events").fetchone()[0]
    assert {pos for (pos,) in rows(conn, "SELECT position FROM projections")} == {head}
    conn.close()


async def test_an_interrupted_rebuild_leaves_the_projections_as_they_were(open_log, store, durability):
    from ductile.events.types import JobSucceeded
    from ductile.projections.projection import Projection

    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    await log.aclose()
    conn = store.open_writer(durability)
    before = snapshot(conn, TABLES)
    checkpoints = rows(conn, "SELECT name, version, position FROM projections ORDER BY name")
    broken = Projection("broken", 1, "CREATE TABLE IF NOT EXISTS broken_rows (n INTEGER)", ("broken_rows",))

    @broken.on(JobSucceeded)
    def _fail(cur, e, rec) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        ProjectionRunner([*ALL, broken]).rebuild(conn)  # the queue and ledger were folded before it raised

    assert snapshot(conn, TABLES) == before
    assert rows(conn, "SELECT name, version, position FROM projections ORDER BY name") == checkpoints
    assert "broken_rows" not in table_names(conn)
    conn.close()


async def test_rebuild_reports_each_projection_its_own_time(open_log, store, durability):
    import time

    from ductile.events.types import JobEnqueued
    from ductile.projections.projection import Projection

    slow = Projection("slow", 1, "CREATE TABLE IF NOT EXISTS slow_rows (n INTEGER)", ("slow_rows",))
    quick = Projection("quick", 1, "CREATE TABLE IF NOT EXISTS quick_rows (n INTEGER)", ("quick_rows",))
    slow.on(JobEnqueued)(lambda cur, e, rec: time.sleep(0.005))  # stands in for an expensive handler
    quick.on(JobEnqueued)(lambda cur, e, rec: None)
    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    await log.aclose()
    conn = store.open_writer(durability)

    reports = {r.name: r for r in ProjectionRunner([slow, quick]).rebuild(conn)}

    assert reports["slow"].events_applied == reports["quick"].events_applied > 0
    assert reports["slow"].seconds >= 0.005 * reports["slow"].events_applied
    assert reports["quick"].seconds < reports["slow"].seconds / 5
    conn.close()


async def test_rebuild_of_one_projection_leaves_the_others_alone(open_log, store, durability):
    log = await open_log(default_runner())
    await job_history(log, 0, NS)
    await log.aclose()
    conn = store.open_writer(durability)
    before = snapshot(conn, TABLES)
    conn.execute("DELETE FROM job_log")
    conn.execute("DELETE FROM job_queue")
    reports = default_runner().rebuild(conn, ["ledger"])
    assert [r.name for r in reports] == ["ledger"]
    after = snapshot(conn, TABLES)
    assert after["job_log"] == before["job_log"]
    assert after["job_queue"] == []
    with pytest.raises(UnknownProjection, match='unknown projection "nope"'):
        default_runner().rebuild(conn, ["nope"])
    conn.close()


async def test_pruning_deletes_projection_rows_only_and_a_rebuild_reproduces_it(
    open_log, store, durability
):
    log = await open_log(default_runner())
    await job_history(log, 0, NS)  # old: every event before 100 s
    cutoff = 500 * NS
    await job_history(log, 100, 1000 * NS)  # recent
    conn = log.reader()
    events_before = rows(conn, "SELECT position, event_id FROM events ORDER BY position")
    old_terminal = [job_id(n) for n in range(0, 8)]
    old_open = [job_id(8), job_id(9)]

    pruned = ProjectionsPruned(
        before={"job_queue": cutoff, "job_log": cutoff, "job_transitions": cutoff, "job_attempts": cutoff},
        at=2000 * NS,
    )
    await log.append("system", [pruned])

    # The log keeps everything; only read-model rows went.
    assert rows(conn, "SELECT position, event_id FROM events ORDER BY position")[:-1] == events_before
    for jid in old_terminal + old_open:
        assert len(read_stream(conn, job_stream(jid))) >= 1
    queue_ids = {j for (j,) in rows(conn, "SELECT job_id FROM job_queue")}
    assert queue_ids.isdisjoint(old_terminal)
    assert set(old_open) <= queue_ids
    assert len(queue_ids) == 12
    log_ids = {j for (j,) in rows(conn, "SELECT job_id FROM job_log")}
    assert log_ids.isdisjoint(old_terminal) and len(log_ids) == 8
    assert rows(conn, "SELECT COUNT(*) FROM job_transitions WHERE created_ns < ?", cutoff) == [(0,)]
    assert rows(conn, "SELECT COUNT(*) FROM job_attempts WHERE created_ns < ?", cutoff) == [(0,)]

    # Work after the prune touches pruned rows (the old running job's attempt row is gone).
    await decide_after_prune(log)
    await log.aclose()
    conn.close()

    conn = store.open_writer(durability)
    pruned_state = snapshot(conn, TABLES)
    default_runner().rebuild(conn)
    assert snapshot(conn, TABLES) == pruned_state
    conn.close()


async def decide_after_prune(log) -> None:
    await log.submit(lambda tx: decide_and_append(tx, complete(9, 1), 3000 * NS))
    await log.submit(lambda tx: decide_and_append(tx, ClaimJob(job_id=job_id(8)), 3001 * NS))


async def test_a_runner_without_a_projection_leaves_its_checkpoint_behind(open_log):
    log = await open_log(default_runner())
    await log.aclose()
    partial = await open_log(ProjectionRunner([queue.PROJECTION]))
    await partial.append("plugin-echo", [PluginStateChanged(plugin="echo", state={"a": 1}, at=NS)])
    await partial.aclose()
    log = await open_log(default_runner())
    conn = log.reader()
    assert rows(conn, "SELECT plugin, state FROM plugin_state") == [("echo", '{"a":1}')]
    conn.close()


async def test_a_job_skipped_after_a_retry_logs_its_current_attempt(open_log):
    log = await open_log(default_runner())
    for t, cmd in enumerate(
        [enqueue(1), ClaimJob(job_id=job_id(1)), complete(1, 1, ERROR), SkipJob(job_id=job_id(1))]
    ):
        await run_command(log, cmd, (t + 1) * NS)
    conn = log.reader()
    assert rows(conn, "SELECT status, attempt FROM job_queue") == [("skipped", 2)]
    assert rows(conn, "SELECT id, attempt FROM job_log") == [(f"{job_id(1)}-2", 2)]
    conn.close()
