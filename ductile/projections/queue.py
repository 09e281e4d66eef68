"""The job queue read model: one row per job, the claim index, and the dedupe lookups.

Terminal rows are removed by ``ProjectionsPruned`` (``job_queue`` cut-off, by completion time).
Because ``service.job_queue_retention >= service.dedupe_ttl`` is enforced by the config, this
table also serves as the dedupe index for the whole window.
"""

from __future__ import annotations

import sqlite3

import msgspec

from ductile.events.record import Recorded
from ductile.events.timefmt import sql_ts
from ductile.events.types import (
    JobDead,
    JobDispatchFailed,
    JobEnqueued,
    JobFailed,
    JobRecovered,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobSucceeded,
    ProjectionsPruned,
)
from ductile.projections.projection import Projection
from ductile.vocabulary import TERMINAL_SQL

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_queue (
  job_id TEXT PRIMARY KEY,
  plugin TEXT NOT NULL,
  command TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  submitted_by TEXT NOT NULL,
  dedupe_key TEXT,
  created_at TEXT NOT NULL,
  started_at TEXT,
  completed_at TEXT,
  next_retry_at TEXT,
  last_error TEXT,
  result TEXT,
  parent_job_id TEXT,
  source_event_id TEXT,
  event_context_id TEXT,
  schedule_id TEXT,
  pipeline TEXT,
  step_id TEXT,
  enqueued_config_snapshot_id TEXT,
  started_config_snapshot_id TEXT,
  enqueue_position INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  next_retry_ns INTEGER,
  completed_ns INTEGER,
  stream_version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS job_queue_claim ON job_queue(status, created_ns, enqueue_position);
CREATE INDEX IF NOT EXISTS job_queue_dedupe ON job_queue(plugin, command, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS job_queue_completed ON job_queue(completed_ns) WHERE completed_ns IS NOT NULL;
CREATE INDEX IF NOT EXISTS job_queue_parent ON job_queue(parent_job_id) WHERE parent_job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS job_queue_created ON job_queue(created_ns);
-- The claim's lanes: queued rows only, per plugin in FIFO order, with next_retry_ns alongside so a
-- waiting retry is passed over inside the index.
CREATE INDEX IF NOT EXISTS job_queue_lane ON job_queue(plugin, created_ns, enqueue_position, next_retry_ns)
  WHERE status='queued'
"""

PROJECTION = Projection(name="queue", version=3, schema=SCHEMA, tables=("job_queue",))

_json = msgspec.json.Encoder()

INSERT_JOB = """
INSERT INTO job_queue(job_id, plugin, command, payload, status, attempt, max_attempts, submitted_by,
  dedupe_key, created_at, parent_job_id, source_event_id, event_context_id, schedule_id, pipeline,
  step_id, enqueued_config_snapshot_id, enqueue_position, created_ns, stream_version)
VALUES (?, ?, ?, ?, 'queued', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


@PROJECTION.on(JobEnqueued)
def _enqueued(cur: sqlite3.Cursor, e: JobEnqueued, rec: Recorded) -> None:
    cur.execute(
        INSERT_JOB,
        (
            e.job_id, e.plugin, e.command, _json.encode(e.payload).decode(), e.max_attempts,
            e.submitted_by, e.dedupe_key, sql_ts(e.at), e.parent_job_id, e.source_event_id,
            e.event_context_id, e.schedule_id, e.pipeline, e.step_id, e.config_snapshot_id,
            rec.position, e.at, rec.version,
        ),
    )


@PROJECTION.on(JobStarted)
def _started(cur: sqlite3.Cursor, e: JobStarted, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='running', attempt=?, started_at=?, next_retry_at=NULL,"
        " next_retry_ns=NULL, started_config_snapshot_id=?, stream_version=? WHERE job_id=?",
        (e.attempt, sql_ts(e.at), e.config_snapshot_id, rec.version, e.job_id),
    )


@PROJECTION.on(JobSucceeded)
def _succeeded(cur: sqlite3.Cursor, e: JobSucceeded, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='succeeded', completed_at=?, completed_ns=?, result=?, last_error=NULL,"
        " stream_version=? WHERE job_id=?",
        (sql_ts(e.at), e.at, e.result, rec.version, e.job_id),
    )


@PROJECTION.on(JobRetryScheduled)
def _retry(cur: sqlite3.Cursor, e: JobRetryScheduled, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='queued', attempt=?, next_retry_at=?, next_retry_ns=?, last_error=?,"
        " stream_version=? WHERE job_id=?",
        (e.attempt + 1, sql_ts(e.next_retry_at), e.next_retry_at, e.error, rec.version, e.job_id),
    )


@PROJECTION.on(JobFailed)
def _failed(cur: sqlite3.Cursor, e: JobFailed, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status=?, completed_at=?, completed_ns=?, last_error=?, result=?, stream_version=?"
        " WHERE job_id=?",
        (e.status, sql_ts(e.at), e.at, e.error, e.result, rec.version, e.job_id),
    )


@PROJECTION.on(JobRecovered)
def _recovered(cur: sqlite3.Cursor, e: JobRecovered, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='queued', attempt=?, next_retry_at=NULL, next_retry_ns=NULL, last_error=?,"
        " stream_version=? WHERE job_id=?",
        (e.attempt, e.error, rec.version, e.job_id),
    )


@PROJECTION.on(JobDead)
def _dead(cur: sqlite3.Cursor, e: JobDead, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='dead', completed_at=?, completed_ns=?, last_error=?, stream_version=?"
        " WHERE job_id=?",
        (sql_ts(e.at), e.at, e.error, rec.version, e.job_id),
    )


@PROJECTION.on(JobSkipped)
def _skipped(cur: sqlite3.Cursor, e: JobSkipped, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='skipped', completed_at=?, completed_ns=?, last_error=NULL, stream_version=?"
        " WHERE job_id=?",
        (sql_ts(e.at), e.at, rec.version, e.job_id),
    )


@PROJECTION.on(JobDispatchFailed)
def _dispatch_failed(cur: sqlite3.Cursor, e: JobDispatchFailed, rec: Recorded) -> None:
    cur.execute(
        "UPDATE job_queue SET status='failed', completed_at=?, completed_ns=?, last_error=?, stream_version=?"
        " WHERE job_id=?",
        (sql_ts(e.at), e.at, e.error, rec.version, e.job_id),
    )


@PROJECTION.on(ProjectionsPruned)
def _pruned(cur: sqlite3.Cursor, e: ProjectionsPruned, rec: Recorded) -> None:
    before = e.before.get("job_queue")
    if before:
        cur.execute(
            "DELETE FROM job_queue WHERE completed_ns IS NOT NULL AND completed_ns < ?"
            f" AND status IN {TERMINAL_SQL}",
            (before,),
        )
