"""The job ledger: ``job_log`` (one row per terminal job), ``job_transitions``, ``job_attempts``,
and ``job_dispatch_drops`` (routed dispatches of a job that created no child: deduped, or refused by
a depth guard), which ``job inspect`` lists beside the children.

Self-contained: the few enqueue facts a ``job_log`` row needs are kept in ``ledger_jobs`` until
the job is terminal, so the ledger can be rebuilt on its own even after ``job_queue`` was pruned.
The config snapshot a job last started under is its latest attempt's, read when its ``job_log``
row is written, so a start costs no update of the staging row.
"""

from __future__ import annotations

import sqlite3

import msgspec

from ductile.events.record import Recorded
from ductile.events.store import StoreKind, dialect_of
from ductile.events.timefmt import sql_ts
from ductile.events.types import (
    JobDead,
    JobDeduped,
    JobDispatchFailed,
    JobEnqueued,
    JobFailed,
    JobRecovered,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobSucceeded,
    ProjectionsPruned,
    RouteDepthExceeded,
    StopwatchSub,
)
from ductile.projections.projection import Projection
from ductile.vocabulary import AttemptOutcome, DeadOutcome, JobStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_jobs (
  job_id TEXT PRIMARY KEY,
  plugin TEXT NOT NULL,
  command TEXT NOT NULL,
  submitted_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  parent_job_id TEXT,
  source_event_id TEXT,
  event_context_id TEXT,
  enqueued_config_snapshot_id TEXT
);
CREATE TABLE IF NOT EXISTS job_log (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  plugin TEXT NOT NULL,
  command TEXT NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  attempt INTEGER NOT NULL,
  submitted_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  completed_at TEXT NOT NULL,
  last_error TEXT,
  stderr TEXT,
  parent_job_id TEXT,
  source_event_id TEXT,
  event_context_id TEXT,
  enqueued_config_snapshot_id TEXT,
  started_config_snapshot_id TEXT,
  completed_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS job_log_completed ON job_log(completed_ns);
CREATE INDEX IF NOT EXISTS job_log_job ON job_log(job_id);
CREATE TABLE IF NOT EXISTS job_transitions (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL,
  from_status TEXT,
  to_status TEXT NOT NULL,
  reason TEXT,
  created_at TEXT NOT NULL,
  created_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS job_transitions_job ON job_transitions(job_id, id);
CREATE INDEX IF NOT EXISTS job_transitions_created ON job_transitions(created_ns);
CREATE TABLE IF NOT EXISTS job_attempts (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  completed_at TEXT,
  outcome TEXT,
  exit_code INTEGER,
  duration_ms INTEGER,
  error TEXT,
  stderr TEXT,
  created_ns INTEGER NOT NULL,
  subs TEXT,  -- JSON list of ductile_stopwatch_subs, NULL when the plugin reported none
  config_snapshot_id TEXT,  -- the config snapshot the attempt started under
  UNIQUE (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS job_attempts_created ON job_attempts(created_ns);
CREATE TABLE IF NOT EXISTS job_dispatch_drops (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL,
  event_type TEXT,
  pipeline TEXT,
  step_id TEXT,
  outcome TEXT NOT NULL,
  existing_job_id TEXT,
  created_at TEXT NOT NULL,
  created_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS job_dispatch_drops_job ON job_dispatch_drops(job_id, id);
CREATE INDEX IF NOT EXISTS job_dispatch_drops_created ON job_dispatch_drops(created_ns)
"""

PROJECTION = Projection(
    name="ledger",
    version=3,  # 2: job_attempts.subs, job_dispatch_drops; 3: the started snapshot moved to job_attempts
    schema=SCHEMA,
    tables=("ledger_jobs", "job_log", "job_transitions", "job_attempts", "job_dispatch_drops"),
)


def _transition(cur: sqlite3.Cursor, rec: Recorded, job_id: str, frm: str | None, to: str, reason: str | None) -> None:
    at = rec.event.at
    cur.execute(
        "INSERT INTO job_transitions(id, job_id, from_status, to_status, reason, created_at, created_ns)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (rec.position, job_id, frm, to, reason, sql_ts(at), at),
    )


def _finish_attempt(
    cur: sqlite3.Cursor, job_id: str, attempt: int, at: int, outcome: str,
    exit_code: int | None, duration_ms: int | None, error: str | None, stderr: str | None,
    subs: list[StopwatchSub] | None = None,
) -> None:
    cur.execute(
        "UPDATE job_attempts SET completed_at=?, outcome=?, exit_code=?, duration_ms=?, error=?, stderr=?, subs=?"
        " WHERE job_id=? AND attempt=?",
        (sql_ts(at), outcome, exit_code, duration_ms, error, stderr,
         msgspec.json.encode(subs).decode() if subs else None, job_id, attempt),
    )


_JOB_LOG_COLUMNS = (
    "id", "job_id", "plugin", "command", "status", "result", "attempt", "submitted_by", "created_at", "completed_at",
    "last_error", "stderr", "parent_job_id", "source_event_id", "event_context_id", "enqueued_config_snapshot_id",
    "started_config_snapshot_id", "completed_ns",
)
_LOG_JOB_SELECT = (
    f"job_log({', '.join(_JOB_LOG_COLUMNS)})"
    " SELECT ?, job_id, plugin, command, ?, ?, ?, submitted_by, created_at, ?, ?, ?, parent_job_id,"
    " source_event_id, event_context_id, enqueued_config_snapshot_id,"
    " (SELECT a.config_snapshot_id FROM job_attempts a WHERE a.job_id=l.job_id ORDER BY a.attempt DESC LIMIT 1), ?"
    " FROM ledger_jobs l WHERE job_id=?"
)
# The row of an attempt logged again replaces the first: SQLite's OR REPLACE; PostgreSQL names the
# conflict and the columns it takes.
_LOG_JOB = {
    StoreKind.SQLITE: f"INSERT OR REPLACE INTO {_LOG_JOB_SELECT}",
    StoreKind.POSTGRES: f"INSERT INTO {_LOG_JOB_SELECT} ON CONFLICT (id) DO UPDATE SET "
                        + ", ".join(f"{c} = excluded.{c}" for c in _JOB_LOG_COLUMNS[1:]),
}


def _log(
    cur: sqlite3.Cursor, job_id: str, attempt: int, status: str, at: int,
    result: str | None, last_error: str | None, stderr: str | None,
) -> None:
    cur.execute(
        _LOG_JOB[dialect_of(cur)],
        (f"{job_id}-{attempt}", status, result, attempt, sql_ts(at), last_error, stderr, at, job_id),
    )
    cur.execute("DELETE FROM ledger_jobs WHERE job_id=?", (job_id,))


@PROJECTION.on(JobEnqueued)
def _enqueued(cur: sqlite3.Cursor, e: JobEnqueued, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO ledger_jobs(job_id, plugin, command, submitted_by, created_at, parent_job_id,"
        " source_event_id, event_context_id, enqueued_config_snapshot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.job_id, e.plugin, e.command, e.submitted_by, sql_ts(e.at), e.parent_job_id,
         e.source_event_id, e.event_context_id, e.config_snapshot_id),
    )
    _transition(cur, rec, e.job_id, None, JobStatus.QUEUED, None)


@PROJECTION.on(JobStarted)
def _started(cur: sqlite3.Cursor, e: JobStarted, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO job_attempts(id, job_id, attempt, created_at, created_ns, config_snapshot_id) VALUES (?, ?, ?, ?, ?, ?)",
        (rec.position, e.job_id, e.attempt, sql_ts(e.at), e.at, e.config_snapshot_id),
    )
    _transition(cur, rec, e.job_id, JobStatus.QUEUED, JobStatus.RUNNING, None)


@PROJECTION.on(JobSucceeded)
def _succeeded(cur: sqlite3.Cursor, e: JobSucceeded, rec: Recorded) -> None:
    _finish_attempt(cur, e.job_id, e.attempt, e.at, AttemptOutcome.OK, e.exit_code, e.duration_ms, None, e.stderr, e.subs)
    _transition(cur, rec, e.job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED, None)
    _log(cur, e.job_id, e.attempt, JobStatus.SUCCEEDED, e.at, e.result, None, e.stderr)


@PROJECTION.on(JobRetryScheduled)
def _retry(cur: sqlite3.Cursor, e: JobRetryScheduled, rec: Recorded) -> None:
    _finish_attempt(cur, e.job_id, e.attempt, e.at, e.outcome, e.exit_code, e.duration_ms, e.error, e.stderr, e.subs)
    _transition(cur, rec, e.job_id, JobStatus.RUNNING, JobStatus.QUEUED, e.error)


@PROJECTION.on(JobFailed)
def _failed(cur: sqlite3.Cursor, e: JobFailed, rec: Recorded) -> None:
    _finish_attempt(cur, e.job_id, e.attempt, e.at, e.outcome, e.exit_code, e.duration_ms, e.error, e.stderr, e.subs)
    _transition(cur, rec, e.job_id, JobStatus.RUNNING, e.status, e.error)
    _log(cur, e.job_id, e.attempt, e.status, e.at, e.result, e.error, e.stderr)


@PROJECTION.on(JobRecovered)
def _recovered(cur: sqlite3.Cursor, e: JobRecovered, rec: Recorded) -> None:
    _finish_attempt(cur, e.job_id, e.attempt - 1, e.at, DeadOutcome.INTERRUPTED, None, None, e.error, None)
    _transition(cur, rec, e.job_id, JobStatus.RUNNING, JobStatus.QUEUED, "crash_recovery")


@PROJECTION.on(JobDead)
def _dead(cur: sqlite3.Cursor, e: JobDead, rec: Recorded) -> None:
    if e.outcome is not None:
        _finish_attempt(cur, e.job_id, e.attempt, e.at, e.outcome, None, None, e.error, None)
    _transition(cur, rec, e.job_id, e.from_status, JobStatus.DEAD, e.reason)
    _log(cur, e.job_id, e.attempt, JobStatus.DEAD, e.at, None, e.error, None)


@PROJECTION.on(JobSkipped)
def _skipped(cur: sqlite3.Cursor, e: JobSkipped, rec: Recorded) -> None:
    _transition(cur, rec, e.job_id, JobStatus.QUEUED, JobStatus.SKIPPED, e.reason)
    _log(cur, e.job_id, e.attempt, JobStatus.SKIPPED, e.at, None, None, None)


@PROJECTION.on(JobDispatchFailed)
def _dispatch_failed(cur: sqlite3.Cursor, e: JobDispatchFailed, rec: Recorded) -> None:
    _transition(cur, rec, e.job_id, JobStatus.QUEUED, JobStatus.FAILED, e.error)
    _log(cur, e.job_id, 1, JobStatus.FAILED, e.at, None, e.error, None)


def _dispatch_drop(cur: sqlite3.Cursor, rec: Recorded, job_id: str, outcome: str, event_type: str | None,
                   pipeline: str | None, step_id: str | None, existing_job_id: str | None) -> None:
    at = rec.event.at
    cur.execute(
        "INSERT INTO job_dispatch_drops(id, job_id, event_type, pipeline, step_id, outcome, existing_job_id,"
        " created_at, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.position, job_id, event_type, pipeline, step_id, outcome, existing_job_id, sql_ts(at), at),
    )


@PROJECTION.on(JobDeduped)
def _deduped(cur: sqlite3.Cursor, e: JobDeduped, rec: Recorded) -> None:
    if e.parent_job_id is not None:  # API, scheduler and other direct enqueues have no emitting job
        _dispatch_drop(cur, rec, e.parent_job_id, "deduped", e.event_type, e.pipeline, e.step_id, e.existing_job_id)


@PROJECTION.on(RouteDepthExceeded)
def _depth_exceeded(cur: sqlite3.Cursor, e: RouteDepthExceeded, rec: Recorded) -> None:
    _dispatch_drop(cur, rec, e.job_id, "depth_exceeded", None, e.pipeline, e.step_id, None)


@PROJECTION.on(ProjectionsPruned)
def _pruned(cur: sqlite3.Cursor, e: ProjectionsPruned, rec: Recorded) -> None:
    for key, sql in (
        ("job_log", "DELETE FROM job_log WHERE completed_ns < ?"),
        ("job_transitions", "DELETE FROM job_transitions WHERE created_ns < ?"),
        ("job_attempts", "DELETE FROM job_attempts WHERE created_ns < ?"),
        # Dropped dispatches are part of a job's history: they go with its transitions.
        ("job_transitions", "DELETE FROM job_dispatch_drops WHERE created_ns < ?"),
    ):
        before = e.before.get(key)
        if before:
            cur.execute(sql, (before,))
