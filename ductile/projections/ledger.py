"""The job ledger: ``job_log`` (one row per terminal job), ``job_transitions``, ``job_attempts``,
and ``job_dispatch_drops`` (routed dispatches of a job that created no child: deduped, or refused by
a depth guard), which ``job inspect`` lists beside the children.

Self-contained: the few enqueue facts a ``job_log`` row needs are kept in ``ledger_jobs`` until
the job is terminal, so the ledger can be rebuilt on its own even after ``job_queue`` was pruned.
The config snapshot a job last started under is its latest attempt's, read when its ``job_log``
row is written, so a start costs no update of the staging row.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any, ClassVar

import msgspec

from ductile.events.record import Recorded
from ductile.events.store import StoreKind, dialect_of
from ductile.events.timefmt import sql_ts
from ductile.events.types import (
    EventBase,
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
from ductile.projections.projection import BULK_ROWS_HELD, Handler, Projection
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
    reads_meta=False,  # its handlers read a record's position and event only (projection.py)
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


# --- the bulk fold (system rebuild, start-up, selfcheck's replay) ---------------------------------

_TRANSITION_COLUMNS = "id, job_id, from_status, to_status, reason, created_at, created_ns"
_ATTEMPT_COLUMNS = ("id, job_id, attempt, created_at, completed_at, outcome, exit_code, duration_ms, error, stderr,"
                    " created_ns, subs, config_snapshot_id")
_LOG_COLUMNS = ("id, job_id, plugin, command, status, result, attempt, submitted_by, created_at, completed_at,"
                " last_error, stderr, parent_job_id, source_event_id, event_context_id, enqueued_config_snapshot_id,"
                " started_config_snapshot_id, completed_ns")
_STAGING_COLUMNS = ("job_id, plugin, command, submitted_by, created_at, parent_job_id, source_event_id,"
                    " event_context_id, enqueued_config_snapshot_id")
_DROP_COLUMNS = "id, job_id, event_type, pipeline, step_id, outcome, existing_job_id, created_at, created_ns"


def _insert(table: str, columns: str, verb: str = "INSERT") -> str:
    return f"{verb} INTO {table}({columns}) VALUES ({', '.join('?' * (columns.count(',') + 1))})"


_INSERT_TRANSITIONS = _insert("job_transitions", _TRANSITION_COLUMNS)
_INSERT_ATTEMPTS = _insert("job_attempts", _ATTEMPT_COLUMNS)
# The live ``_log`` replaces a row of the same id (the row moves to the table's end): so does this.
_INSERT_LOG = _insert("job_log", _LOG_COLUMNS, "INSERT OR REPLACE")
_INSERT_STAGING = _insert("ledger_jobs", _STAGING_COLUMNS)
_INSERT_DROPS = _insert("job_dispatch_drops", _DROP_COLUMNS)
# Plain text, not the StrEnum members (projection.py says why).
_QUEUED, _RUNNING, _SUCCEEDED, _DEAD, _SKIPPED, _FAILED = map(str, (
    JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.SKIPPED, JobStatus.FAILED))
_OK, _INTERRUPTED = str(AttemptOutcome.OK), str(DeadOutcome.INTERRUPTED)
# Indexes into a held job_attempts row (the order of _ATTEMPT_COLUMNS) and job_log row.
_A_COMPLETED_AT, _A_CREATED_NS, _A_SNAPSHOT = 4, 10, 12
_L_COMPLETED_NS = 17


class _HeldJob:
    """A job the bulk fold holds: its ``ledger_jobs`` row (None once terminal) and its attempts."""

    __slots__ = ("attempts", "staging")

    def __init__(self, staging: tuple[Any, ...]) -> None:
        self.staging: tuple[Any, ...] | None = staging
        self.attempts: dict[int, list[Any]] = {}


@PROJECTION.bulk_fold
class LedgerFold:
    """The ledger folded in memory: transitions and dropped dispatches appended, each job's staging
    row and attempts held until the job is written, ``job_log`` rows in the order the live path
    writes them. Each handler does what its live handler's statements do; a job whose rows were
    already written (jobs beyond ``BULK_ROWS_HELD`` are written oldest first) goes through the live
    handler instead, which then finds every row of that job in the tables."""

    held: ClassVar[int] = BULK_ROWS_HELD  # a test lowers it to make the oldest rows go first

    def __init__(self) -> None:
        self.jobs: dict[str, _HeldJob] = {}
        self.transitions: list[tuple[Any, ...]] = []
        self.drops: list[tuple[Any, ...]] = []
        self.log: dict[str, tuple[Any, ...]] = {}
        self.written = False
        self.handlers: dict[type[EventBase], Handler] = {
            JobEnqueued: self._enqueued, JobStarted: self._started, JobSucceeded: self._succeeded,
            JobRetryScheduled: self._retry, JobFailed: self._failed, JobRecovered: self._recovered,
            JobDead: self._dead, JobSkipped: self._skipped, JobDispatchFailed: self._dispatch_failed,
            JobDeduped: self._deduped, RouteDepthExceeded: self._depth_exceeded, ProjectionsPruned: self._pruned,
        }

    def flush(self, cur: sqlite3.Cursor, *, final: bool) -> None:
        if final or len(self.transitions) + len(self.drops) > self.held:
            cur.executemany(_INSERT_TRANSITIONS, self.transitions)
            cur.executemany(_INSERT_DROPS, self.drops)
            self.transitions, self.drops = [], []
            self.written = True
        if final or len(self.log) > self.held:
            cur.executemany(_INSERT_LOG, list(self.log.values()))
            self.log = {}
            self.written = True
        if final or len(self.jobs) > self.held:
            keep = 0 if final else self.held // 2
            oldest = [self.jobs.pop(job_id) for job_id in list(itertools.islice(self.jobs, len(self.jobs) - keep))]
            cur.executemany(_INSERT_STAGING, [job.staging for job in oldest if job.staging is not None])
            cur.executemany(_INSERT_ATTEMPTS, [a for job in oldest for a in job.attempts.values()])
            self.written = True

    def _live(self, handler: Handler, cur: sqlite3.Cursor, e: EventBase, rec: Recorded) -> None:
        # The live handler may write a job_log row: the rows held before it must be in the table
        # first, or the table's order would differ from the live path's.
        if self.log:
            cur.executemany(_INSERT_LOG, list(self.log.values()))
            self.log = {}
        handler(cur, e, rec)

    def _transition(self, rec: Recorded, ts: str, job_id: str, frm: str | None, to: str, reason: str | None) -> None:
        self.transitions.append((rec.position, job_id, frm, to, reason, ts, rec.event.at))

    def _finish(self, job: _HeldJob, attempt: int, ts: str, outcome: str, exit_code: int | None,
                duration_ms: int | None, error: str | None, stderr: str | None,
                subs: list[StopwatchSub] | None = None) -> None:
        row = job.attempts.get(attempt)
        if row is not None:
            row[_A_COMPLETED_AT:_A_CREATED_NS] = (ts, outcome, exit_code, duration_ms, error, stderr)
            row[_A_CREATED_NS + 1] = msgspec.json.encode(subs).decode() if subs else None

    def _log(self, job: _HeldJob, attempt: int, status: str, at: int, ts: str, result: str | None,
             last_error: str | None, stderr: str | None) -> None:
        staging = job.staging
        if staging is None:  # the live INSERT … SELECT finds no ledger_jobs row: nothing written
            return
        job_id, plugin, command, submitted_by, created_at, parent, source, context, enqueued_snapshot = staging
        started_snapshot = job.attempts[max(job.attempts)][_A_SNAPSHOT] if job.attempts else None
        log_id = f"{job_id}-{attempt}"
        self.log.pop(log_id, None)
        self.log[log_id] = (log_id, job_id, plugin, command, status, result, attempt, submitted_by, created_at,
                            ts, last_error, stderr, parent, source, context, enqueued_snapshot,
                            started_snapshot, at)
        job.staging = None

    def _enqueued(self, cur: sqlite3.Cursor, e: JobEnqueued, rec: Recorded) -> None:
        job = self.jobs.pop(e.job_id, None)
        if job is not None and job.staging is not None:  # the live INSERT's primary key refuses it
            raise sqlite3.IntegrityError("UNIQUE constraint failed: ledger_jobs.job_id")
        ts = sql_ts(e.at)
        staging = (e.job_id, e.plugin, e.command, e.submitted_by, ts, e.parent_job_id, e.source_event_id,
                   e.event_context_id, e.config_snapshot_id)
        if job is None:
            job = _HeldJob(staging)
        job.staging = staging
        self.jobs[e.job_id] = job  # at the end: the live row is inserted last
        self._transition(rec, ts, e.job_id, None, _QUEUED, None)

    def _started(self, cur: sqlite3.Cursor, e: JobStarted, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_started, cur, e, rec)
        if e.attempt in job.attempts:  # UNIQUE (job_id, attempt), as the live INSERT
            raise sqlite3.IntegrityError("UNIQUE constraint failed: job_attempts.job_id, job_attempts.attempt")
        ts = sql_ts(e.at)
        job.attempts[e.attempt] = [rec.position, e.job_id, e.attempt, ts, None, None, None, None, None,
                                   None, e.at, None, e.config_snapshot_id]
        self._transition(rec, ts, e.job_id, _QUEUED, _RUNNING, None)

    def _succeeded(self, cur: sqlite3.Cursor, e: JobSucceeded, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_succeeded, cur, e, rec)
        ts = sql_ts(e.at)
        self._finish(job, e.attempt, ts, _OK, e.exit_code, e.duration_ms, None, e.stderr, e.subs)
        self._transition(rec, ts, e.job_id, _RUNNING, _SUCCEEDED, None)
        self._log(job, e.attempt, _SUCCEEDED, e.at, ts, e.result, None, e.stderr)

    def _retry(self, cur: sqlite3.Cursor, e: JobRetryScheduled, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_retry, cur, e, rec)
        ts = sql_ts(e.at)
        self._finish(job, e.attempt, ts, str(e.outcome), e.exit_code, e.duration_ms, e.error, e.stderr, e.subs)
        self._transition(rec, ts, e.job_id, _RUNNING, _QUEUED, e.error)

    def _failed(self, cur: sqlite3.Cursor, e: JobFailed, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_failed, cur, e, rec)
        ts = sql_ts(e.at)
        self._finish(job, e.attempt, ts, str(e.outcome), e.exit_code, e.duration_ms, e.error, e.stderr, e.subs)
        self._transition(rec, ts, e.job_id, _RUNNING, str(e.status), e.error)
        self._log(job, e.attempt, str(e.status), e.at, ts, e.result, e.error, e.stderr)

    def _recovered(self, cur: sqlite3.Cursor, e: JobRecovered, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_recovered, cur, e, rec)
        ts = sql_ts(e.at)
        self._finish(job, e.attempt - 1, ts, _INTERRUPTED, None, None, e.error, None)
        self._transition(rec, ts, e.job_id, _RUNNING, _QUEUED, "crash_recovery")

    def _dead(self, cur: sqlite3.Cursor, e: JobDead, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_dead, cur, e, rec)
        ts = sql_ts(e.at)
        if e.outcome is not None:
            self._finish(job, e.attempt, ts, str(e.outcome), None, None, e.error, None)
        self._transition(rec, ts, e.job_id, str(e.from_status), _DEAD, e.reason)
        self._log(job, e.attempt, _DEAD, e.at, ts, None, e.error, None)

    def _skipped(self, cur: sqlite3.Cursor, e: JobSkipped, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_skipped, cur, e, rec)
        ts = sql_ts(e.at)
        self._transition(rec, ts, e.job_id, _QUEUED, _SKIPPED, e.reason)
        self._log(job, e.attempt, _SKIPPED, e.at, ts, None, None, None)

    def _dispatch_failed(self, cur: sqlite3.Cursor, e: JobDispatchFailed, rec: Recorded) -> None:
        job = self.jobs.get(e.job_id)
        if job is None:
            return self._live(_dispatch_failed, cur, e, rec)
        ts = sql_ts(e.at)
        self._transition(rec, ts, e.job_id, _QUEUED, _FAILED, e.error)
        self._log(job, 1, _FAILED, e.at, ts, None, e.error, None)

    def _drop(self, rec: Recorded, job_id: str, outcome: str, event_type: str | None, pipeline: str | None,
              step_id: str | None, existing_job_id: str | None) -> None:
        at = rec.event.at
        self.drops.append((rec.position, job_id, event_type, pipeline, step_id, outcome, existing_job_id,
                           sql_ts(at), at))

    def _deduped(self, cur: sqlite3.Cursor, e: JobDeduped, rec: Recorded) -> None:
        if e.parent_job_id is not None:
            self._drop(rec, e.parent_job_id, "deduped", e.event_type, e.pipeline, e.step_id, e.existing_job_id)

    def _depth_exceeded(self, cur: sqlite3.Cursor, e: RouteDepthExceeded, rec: Recorded) -> None:
        self._drop(rec, e.job_id, "depth_exceeded", None, e.pipeline, e.step_id, None)

    def _pruned(self, cur: sqlite3.Cursor, e: ProjectionsPruned, rec: Recorded) -> None:
        if before := e.before.get("job_log"):
            self.log = {k: row for k, row in self.log.items() if not row[_L_COMPLETED_NS] < before}
        if before := e.before.get("job_transitions"):
            self.transitions = [row for row in self.transitions if not row[-1] < before]
            self.drops = [row for row in self.drops if not row[-1] < before]
        if before := e.before.get("job_attempts"):
            for job in self.jobs.values():
                if job.attempts:
                    job.attempts = {n: a for n, a in job.attempts.items() if not a[_A_CREATED_NS] < before}
        if self.written:  # rows already in the tables are pruned by the live statements
            _pruned(cur, e, rec)
