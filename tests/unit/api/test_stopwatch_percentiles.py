"""Nearest-rank percentiles, the stopwatch trend, and the queue partition (api.md §4.5, §4.6)."""

from __future__ import annotations

import sqlite3

import pytest

from ductile.events.timefmt import NS, sql_ts
from ductile.projections import ledger, queue
from ductile.projections.analytics_queries import (
    nearest_rank,
    queue_partition,
    stopwatch,
    summary,
    trend,
)
from tests.async_reads import run_read

MS = 1_000_000
NOW = 1_800_000_000 * NS
HOUR = 3_600 * NS


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([15, 20, 35, 40, 50], 5, 15),
        ([15, 20, 35, 40, 50], 30, 20),
        ([15, 20, 35, 40, 50], 40, 20),  # rank ceil(2.0) = 2: an exact rank is not rounded up
        ([15, 20, 35, 40, 50], 50, 35),
        ([15, 20, 35, 40, 50], 100, 50),
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 95, 95),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 21)), 95, 19),
        (list(range(1, 21)), 99, 20),
        ([7], 50, 7),
        ([7], 99, 7),
        ([3, 9], 0, 3),
        ([], 95, 0),
    ],
)
def test_nearest_rank_takes_the_value_at_rank_ceil_p_n(values: list[int], p: float, expected: int) -> None:
    assert nearest_rank(values, p) == expected


def test_nearest_rank_never_interpolates() -> None:
    assert nearest_rank([10, 20], 50) == 10
    assert nearest_rank([10, 20], 51) == 20


def test_trend_has_six_slices_oldest_first_with_zero_for_empty_ones() -> None:
    start, window = 0, 600
    samples = [(5, 100), (50, 300), (150, 7), (599, 42), (600, 44)]
    assert trend(samples, start, window) == [300, 7, 0, 0, 0, 44]


def test_trend_puts_a_sample_on_a_boundary_in_the_later_slice() -> None:
    assert trend([(100, 5)], 0, 600) == [0, 5, 0, 0, 0, 0]
    assert trend([(99, 5)], 0, 600) == [5, 0, 0, 0, 0, 0]


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    for schema in (queue.SCHEMA, ledger.SCHEMA):
        for statement in schema.split(";"):
            if statement.strip():
                conn.execute(statement)
    return conn


def _job(conn: sqlite3.Connection, job_id: str, plugin: str, *, status: str = "succeeded", created: int = NOW - HOUR,
         next_retry: int | None = None, command: str = "poll", pipeline: str | None = None,
         step_id: str | None = None, completed: int | None = None) -> None:
    conn.execute(
        "INSERT INTO job_queue(job_id, plugin, command, payload, status, attempt, max_attempts, submitted_by,"
        " created_at, pipeline, step_id, enqueue_position, created_ns, next_retry_ns, completed_ns)"
        " VALUES (?, ?, ?, '{}', ?, 1, 1, 'test', ?, ?, ?, ?, ?, ?, ?)",
        (job_id, plugin, command, status, sql_ts(created), pipeline, step_id, created, created, next_retry, completed),
    )


def _attempt(conn: sqlite3.Connection, job_id: str, attempt: int, started: int, ended: int | None) -> None:
    conn.execute(
        "INSERT INTO job_attempts(job_id, attempt, created_at, completed_at, created_ns) VALUES (?, ?, ?, ?, ?)",
        (job_id, attempt, sql_ts(started), sql_ts(ended), started),
    )


def _logged(conn: sqlite3.Connection, job_id: str, plugin: str, status: str, completed: int,
            command: str = "poll") -> None:
    conn.execute(
        "INSERT INTO job_log(id, job_id, plugin, command, status, attempt, submitted_by, created_at, completed_at,"
        " completed_ns) VALUES (?, ?, ?, ?, ?, 1, 'test', ?, ?, ?)",
        (f"{job_id}-1", job_id, plugin, command, status, sql_ts(completed), sql_ts(completed), completed),
    )


def test_stopwatch_samples_every_attempt_that_ended_in_the_window() -> None:
    conn = _db()
    durations = [120, 80, 300, 95, 2000]
    for i, ms in enumerate(durations):
        _job(conn, f"j{i}", "enrich")
        end = NOW - (i + 1) * 60 * NS
        _attempt(conn, f"j{i}", 1, end - ms * MS, end)
    _job(conn, "retried", "enrich")
    _attempt(conn, "retried", 1, NOW - 30 * NS - 10 * MS, NOW - 30 * NS)  # a failed attempt counts too
    _attempt(conn, "retried", 2, NOW - 20 * NS, None)  # still running: not a sample
    _job(conn, "old", "enrich")
    _attempt(conn, "old", 1, NOW - 2 * HOUR, NOW - HOUR - NS)  # ended before the window
    _job(conn, "long", "enrich")
    _attempt(conn, "long", 1, NOW - 2 * HOUR, NOW - 10 * NS)  # started before, ended inside: counts
    _job(conn, "other", "notify")
    _attempt(conn, "other", 1, NOW - 2 * NS, NOW - NS)

    body = run_read(conn, lambda c: stopwatch(c, "enrich", "1h", NOW, subs=False))
    assert body["plugin"] == "enrich" and body["window"] == "1h"
    [step] = body["steps"]
    samples = sorted([*durations, 10, 2 * 3_600_000 - 10_000])
    assert step == {
        "step": "poll",
        "sample_count": len(samples),
        "p50_ms": nearest_rank(samples, 50),
        "p95_ms": nearest_rank(samples, 95),
        "p99_ms": nearest_rank(samples, 99),
        "trend_p95_ms": [0, 0, 0, 0, 0, nearest_rank(samples, 95)],
    }


def test_stopwatch_names_pipeline_steps_and_falls_back_to_the_ledger_for_pruned_jobs() -> None:
    conn = _db()
    _job(conn, "a", "enrich", pipeline="digest", step_id="fetch")
    _attempt(conn, "a", 1, NOW - 2 * NS, NOW - NS)
    _logged(conn, "pruned", "enrich", "succeeded", NOW - 3 * NS, command="handle")  # no job_queue row any more
    _attempt(conn, "pruned", 1, NOW - 4 * NS, NOW - 3 * NS)
    steps = run_read(conn, lambda c: stopwatch(c, "enrich", "5m", NOW, subs=True))["steps"]
    assert [(s["step"], s["sample_count"], s["p50_ms"]) for s in steps] == [("digest/fetch", 1, 1000),
                                                                           ("handle", 1, 1000)]
    assert all(s["subs"] == [] for s in steps)


def test_stopwatch_without_the_result_scope_says_subs_are_unavailable() -> None:
    conn = _db()
    _job(conn, "a", "enrich")
    _attempt(conn, "a", 1, NOW - 2 * NS, NOW - NS)
    body = run_read(conn, lambda c: stopwatch(c, "enrich", "24h", NOW, subs=None))
    assert body["subs_unavailable"] == "insufficient_scope"
    assert "subs" not in body["steps"][0]
    assert run_read(conn, lambda c: stopwatch(c, "nobody", "24h", NOW, subs=None))["steps"] == []


def test_queue_partition_splits_eligible_retry_wait_and_running() -> None:
    conn = _db()
    _job(conn, "q1", "enrich", status="queued", created=NOW - 40 * NS)
    _job(conn, "q2", "enrich", status="queued", created=NOW - 10 * NS, next_retry=NOW - NS)  # retry due: eligible
    _job(conn, "w1", "enrich", status="queued", created=NOW - 90 * NS, next_retry=NOW + 60 * NS)
    _job(conn, "q3", "notify", status="queued", created=NOW - 5 * NS)
    _job(conn, "r1", "enrich", status="running")
    _job(conn, "done", "enrich", status="succeeded", completed=NOW - NS)
    part = run_read(conn, lambda c: queue_partition(c, NOW))
    assert part == {
        "depth": {"queued": 3, "retry_wait": 1, "running": 1},
        "depth_total": 5,
        "queued_by_plugin": {"enrich": 2, "notify": 1},
        "running_by_plugin": {"enrich": 1},
        "oldest_queued_age_seconds": 40.0,  # the retry-waiting job is older, but not eligible
    }
    assert run_read(_db(), lambda c: queue_partition(c, NOW))["oldest_queued_age_seconds"] is None


def test_summary_counts_the_last_24_hours_with_all_five_keys() -> None:
    conn = _db()
    _logged(conn, "a", "p", "succeeded", NOW - NS)
    _logged(conn, "b", "p", "failed", NOW - 23 * HOUR)
    _logged(conn, "c", "p", "dead", NOW - 25 * HOUR)
    assert run_read(conn, lambda c: summary(c, NOW))["stats"] == {"succeeded": 1, "failed": 1, "timed_out": 0, "dead": 0, "skipped": 0}
