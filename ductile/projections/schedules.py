"""Schedule entry state per (plugin, schedule_id), and the scheduler's outstanding jobs."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any, ClassVar

import msgspec

from ductile.events.record import Recorded
from ductile.events.timefmt import sql_ts
from ductile.events.types import (
    EventBase,
    JobDead,
    JobDispatchFailed,
    JobEnqueued,
    JobFailed,
    JobRecovered,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobSucceeded,
    ScheduleFired,
    SchedulePlanned,
    ScheduleSkipped,
    ScheduleStatusChanged,
)
from ductile.projections.projection import BULK_ROWS_HELD, Handler, Projection
from ductile.vocabulary import OUTSTANDING_SQL, JobStatus, ScheduleStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_state (
  plugin TEXT NOT NULL,
  schedule_id TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  detail TEXT,
  plan_key TEXT,
  command TEXT NOT NULL,
  mode TEXT NOT NULL,
  timezone TEXT,
  next_slot_ns INTEGER,
  next_run_ns INTEGER,
  first_seen_ns INTEGER,
  last_fired_ns INTEGER,
  last_success_ns INTEGER,
  last_success_job_id TEXT,
  last_skip_reason TEXT,
  last_skip_slot INTEGER,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (plugin, schedule_id)
);
CREATE TABLE IF NOT EXISTS schedule_jobs (
  job_id TEXT PRIMARY KEY,
  plugin TEXT NOT NULL,
  schedule_id TEXT NOT NULL,
  command TEXT NOT NULL,
  status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS schedule_jobs_entry ON schedule_jobs(plugin, schedule_id)
"""

PROJECTION = Projection(name="schedules", version=1, schema=SCHEMA, tables=("schedule_state", "schedule_jobs"), reads_meta=False)


@PROJECTION.on(SchedulePlanned)
def _planned(cur: sqlite3.Cursor, e: SchedulePlanned, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO schedule_state(plugin, schedule_id, status, plan_key, command, mode, timezone, next_slot_ns,"
        " next_run_ns, first_seen_ns, updated_at) VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(plugin, schedule_id) DO UPDATE SET status='active', reason=NULL, detail=NULL,"
        " plan_key=excluded.plan_key, command=excluded.command, mode=excluded.mode, timezone=excluded.timezone,"
        " next_slot_ns=excluded.next_slot_ns, next_run_ns=excluded.next_run_ns,"
        " first_seen_ns=excluded.first_seen_ns, last_skip_reason=NULL, last_skip_slot=NULL,"
        " updated_at=excluded.updated_at",
        (e.plugin, e.schedule_id, e.plan_key, e.command, e.mode, e.timezone, e.next_slot_at, e.next_run_at,
         e.first_seen_at, sql_ts(e.at)),
    )
    if e.clear_success:
        cur.execute(
            "UPDATE schedule_state SET last_success_ns=NULL, last_success_job_id=NULL WHERE plugin=? AND schedule_id=?",
            (e.plugin, e.schedule_id),
        )


@PROJECTION.on(ScheduleFired)
def _fired(cur: sqlite3.Cursor, e: ScheduleFired, rec: Recorded) -> None:
    if e.exhausted:
        cur.execute(
            "UPDATE schedule_state SET status='exhausted', reason='one_shot_exhausted', next_slot_ns=NULL,"
            " next_run_ns=NULL, last_fired_ns=?, last_skip_reason=NULL, last_skip_slot=NULL, updated_at=?"
            " WHERE plugin=? AND schedule_id=?",
            (e.at, sql_ts(e.at), e.plugin, e.schedule_id),
        )
    elif e.next_slot_at is not None:
        cur.execute(
            "UPDATE schedule_state SET next_slot_ns=?, next_run_ns=?, last_fired_ns=?, last_skip_reason=NULL,"
            " last_skip_slot=NULL, updated_at=? WHERE plugin=? AND schedule_id=?",
            (e.next_slot_at, e.next_run_at, e.at, sql_ts(e.at), e.plugin, e.schedule_id),
        )
    else:
        cur.execute(
            "UPDATE schedule_state SET last_fired_ns=?, updated_at=? WHERE plugin=? AND schedule_id=?",
            (e.at, sql_ts(e.at), e.plugin, e.schedule_id),
        )


@PROJECTION.on(ScheduleSkipped)
def _skipped(cur: sqlite3.Cursor, e: ScheduleSkipped, rec: Recorded) -> None:
    if e.next_slot_at is not None:
        cur.execute(
            "UPDATE schedule_state SET next_slot_ns=?, next_run_ns=?, last_skip_reason=?, last_skip_slot=?,"
            " updated_at=? WHERE plugin=? AND schedule_id=?",
            (e.next_slot_at, e.next_run_at, e.reason, e.slot, sql_ts(e.at), e.plugin, e.schedule_id),
        )
    else:
        cur.execute(
            "UPDATE schedule_state SET last_skip_reason=?, last_skip_slot=?, updated_at=? WHERE plugin=? AND schedule_id=?",
            (e.reason, e.slot, sql_ts(e.at), e.plugin, e.schedule_id),
        )


@PROJECTION.on(ScheduleStatusChanged)
def _status(cur: sqlite3.Cursor, e: ScheduleStatusChanged, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO schedule_state(plugin, schedule_id, status, reason, detail, command, mode, timezone, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(plugin, schedule_id) DO UPDATE SET status=excluded.status,"
        " reason=excluded.reason, detail=excluded.detail, command=excluded.command, mode=excluded.mode,"
        " timezone=excluded.timezone, plan_key=CASE WHEN excluded.status='paused_invalid' THEN NULL ELSE schedule_state.plan_key END,"
        " updated_at=excluded.updated_at",
        (e.plugin, e.schedule_id, e.status, e.reason, e.detail, e.command, e.mode, e.timezone, sql_ts(e.at)),
    )


@PROJECTION.on(JobEnqueued)
def _job_enqueued(cur: sqlite3.Cursor, e: JobEnqueued, rec: Recorded) -> None:
    if e.schedule_id is not None:
        cur.execute(
            "INSERT INTO schedule_jobs(job_id, plugin, schedule_id, command, status) VALUES (?, ?, ?, ?, 'queued')",
            (e.job_id, e.plugin, e.schedule_id, e.command),
        )


# Every job event repeats its job's ``schedule_id`` (``commands.jobs.identity``, since before release
# 1): a job without one has no ``schedule_jobs`` row, so its events cost no statement here.


@PROJECTION.on(JobStarted)
def _job_started(cur: sqlite3.Cursor, e: JobStarted, rec: Recorded) -> None:
    if e.schedule_id is None:
        return
    cur.execute("UPDATE schedule_jobs SET status='running' WHERE job_id=?", (e.job_id,))


@PROJECTION.on(JobRetryScheduled, JobRecovered)
def _job_requeued(cur: sqlite3.Cursor, e: JobRetryScheduled | JobRecovered, rec: Recorded) -> None:
    if e.schedule_id is None:
        return
    cur.execute("UPDATE schedule_jobs SET status='queued' WHERE job_id=?", (e.job_id,))


@PROJECTION.on(JobSucceeded)
def _job_succeeded(cur: sqlite3.Cursor, e: JobSucceeded, rec: Recorded) -> None:
    if e.schedule_id is None:
        return
    row = cur.execute("SELECT plugin, schedule_id FROM schedule_jobs WHERE job_id=?", (e.job_id,)).fetchone()
    if row is None:
        return
    _record_success(cur, e, row[0], row[1])
    cur.execute("DELETE FROM schedule_jobs WHERE job_id=?", (e.job_id,))


def _record_success(cur: sqlite3.Cursor, e: JobSucceeded, plugin: str, schedule_id: str) -> None:
    cur.execute(
        "UPDATE schedule_state SET last_success_ns=?, last_success_job_id=? WHERE plugin=? AND schedule_id=?",
        (e.at, e.job_id, plugin, schedule_id),
    )


@PROJECTION.on(JobFailed, JobDead, JobSkipped, JobDispatchFailed)
def _job_ended(cur: sqlite3.Cursor, e: JobFailed | JobDead | JobSkipped | JobDispatchFailed, rec: Recorded) -> None:
    if e.schedule_id is None:
        return
    cur.execute("DELETE FROM schedule_jobs WHERE job_id=?", (e.job_id,))


# --- the bulk fold (system rebuild, start-up, selfcheck's replay) ---------------------------------

_INSERT_JOBS = "INSERT INTO schedule_jobs(job_id, plugin, schedule_id, command, status) VALUES (?, ?, ?, ?, ?)"
_QUEUED, _RUNNING = str(JobStatus.QUEUED), str(JobStatus.RUNNING)  # plain text (projection.py says why)
_JOB_STATUS = 4  # index into a held schedule_jobs row


@PROJECTION.bulk_fold
class SchedulesFold:
    """``schedule_jobs`` (a scheduled job's row from its enqueue to its end) held in memory, so a
    scheduled job costs no statement but its success's; entries (``schedule_state``, a few rows
    that many events update) go through the live handlers. Held rows beyond ``BULK_ROWS_HELD``
    are written oldest first; a later event of such a job takes the live handler."""

    held: ClassVar[int] = BULK_ROWS_HELD  # a test lowers it to make the oldest rows go first

    def __init__(self) -> None:
        self.jobs: dict[str, list[Any]] = {}
        self.handlers: dict[type[EventBase], Handler] = {
            SchedulePlanned: _planned, ScheduleFired: _fired, ScheduleSkipped: _skipped,
            ScheduleStatusChanged: _status, JobEnqueued: self._enqueued, JobStarted: self._started,
            JobRetryScheduled: self._requeued, JobRecovered: self._requeued, JobSucceeded: self._succeeded,
            JobFailed: self._ended, JobDead: self._ended, JobSkipped: self._ended, JobDispatchFailed: self._ended,
        }

    def flush(self, cur: sqlite3.Cursor, *, final: bool) -> None:
        if final or len(self.jobs) > self.held:
            keep = 0 if final else self.held // 2
            oldest = list(itertools.islice(self.jobs, len(self.jobs) - keep))
            cur.executemany(_INSERT_JOBS, [self.jobs.pop(job_id) for job_id in oldest])

    def _enqueued(self, cur: sqlite3.Cursor, e: JobEnqueued, rec: Recorded) -> None:
        if e.schedule_id is None:
            return
        if e.job_id in self.jobs:  # the live INSERT's primary key refuses it the same way
            raise sqlite3.IntegrityError("UNIQUE constraint failed: schedule_jobs.job_id")
        self.jobs[e.job_id] = [e.job_id, e.plugin, e.schedule_id, e.command, _QUEUED]

    def _started(self, cur: sqlite3.Cursor, e: JobStarted, rec: Recorded) -> None:
        if e.schedule_id is None:
            return
        row = self.jobs.get(e.job_id)
        if row is None:
            return _job_started(cur, e, rec)
        row[_JOB_STATUS] = _RUNNING

    def _requeued(self, cur: sqlite3.Cursor, e: JobRetryScheduled | JobRecovered, rec: Recorded) -> None:
        if e.schedule_id is None:
            return
        row = self.jobs.get(e.job_id)
        if row is None:
            return _job_requeued(cur, e, rec)
        row[_JOB_STATUS] = _QUEUED

    def _succeeded(self, cur: sqlite3.Cursor, e: JobSucceeded, rec: Recorded) -> None:
        if e.schedule_id is None:
            return
        row = self.jobs.pop(e.job_id, None)
        if row is None:
            return _job_succeeded(cur, e, rec)
        _record_success(cur, e, row[1], row[2])

    def _ended(self, cur: sqlite3.Cursor, e: JobFailed | JobDead | JobSkipped | JobDispatchFailed,
               rec: Recorded) -> None:
        if e.schedule_id is None:
            return
        if self.jobs.pop(e.job_id, None) is None:
            _job_ended(cur, e, rec)


class ScheduleRecord(msgspec.Struct, frozen=True):
    """One ``schedule_state`` row, as the schedule decider needs it (times in Unix ns)."""

    status: ScheduleStatus
    reason: str | None
    detail: str | None
    plan_key: str | None
    command: str
    next_slot_ns: int | None
    next_run_ns: int | None
    first_seen_ns: int | None
    last_fired_ns: int | None
    last_skip_reason: str | None
    last_skip_slot: int | None


def find_entry(cur: sqlite3.Cursor, plugin: str, schedule_id: str) -> ScheduleRecord | None:
    row = cur.execute(
        "SELECT status, reason, detail, plan_key, command, next_slot_ns, next_run_ns, first_seen_ns, last_fired_ns,"
        " last_skip_reason, last_skip_slot FROM schedule_state WHERE plugin=? AND schedule_id=?",
        (plugin, schedule_id),
    ).fetchone()
    return None if row is None else ScheduleRecord(ScheduleStatus(row[0]), *row[1:])


def outstanding_job_ids(cur: sqlite3.Cursor, plugin: str, schedule_id: str) -> list[str]:
    """The entry's jobs still queued or running."""
    return [job_id for (job_id,) in cur.execute(
        f"SELECT job_id FROM schedule_jobs WHERE plugin=? AND schedule_id=? AND status IN {OUTSTANDING_SQL}",
        (plugin, schedule_id),
    )]


def planned_runs(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """``next_run_at`` of every active entry that has one, keyed by (plugin, schedule id)."""
    return {
        (plugin, sid): nxt
        for plugin, sid, nxt in conn.execute(
            "SELECT plugin, schedule_id, next_run_ns FROM schedule_state WHERE status='active' AND next_run_ns IS NOT NULL"
        )
    }
