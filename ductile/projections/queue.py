"""The job queue read model: one row per job, the claim index, and the dedupe lookups.

Terminal rows are removed by ``ProjectionsPruned`` (``job_queue`` cut-off, by completion time).
Because ``service.job_queue_retention >= service.dedupe_ttl`` is enforced by the config, this
table also serves as the dedupe index for the whole window.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from typing import Any, ClassVar

import msgspec

from ductile.events.record import Recorded
from ductile.events.store import StoreKind, dialect_of
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
    ProjectionsPruned,
)
from ductile.projections.projection import BULK_ROWS_HELD, Handler, Projection
from ductile.vocabulary import OUTSTANDING_SQL, TERMINAL, TERMINAL_SQL, JobStatus

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
  stream_version INTEGER NOT NULL DEFAULT 1,
  node TEXT
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

PROJECTION = Projection(name="queue", version=4, schema=SCHEMA, tables=("job_queue",), reads_meta=False)

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
        " next_retry_ns=NULL, started_config_snapshot_id=?, stream_version=?, node=? WHERE job_id=?",
        (e.attempt, sql_ts(e.at), e.config_snapshot_id, rec.version, e.node, e.job_id),
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


# --- the bulk fold (system rebuild, start-up, selfcheck's replay) ---------------------------------

_COLUMNS = ("job_id, plugin, command, payload, status, attempt, max_attempts, submitted_by, dedupe_key, created_at,"
            " started_at, completed_at, next_retry_at, last_error, result, parent_job_id, source_event_id,"
            " event_context_id, schedule_id, pipeline, step_id, enqueued_config_snapshot_id,"
            " started_config_snapshot_id, enqueue_position, created_ns, next_retry_ns, completed_ns, stream_version,"
            " node")
_INSERT_ROWS = f"INSERT INTO job_queue({_COLUMNS}) VALUES ({', '.join('?' * (_COLUMNS.count(',') + 1))})"
# Plain text, not the StrEnum members (projection.py says why).
_QUEUED, _RUNNING, _SUCCEEDED, _DEAD, _SKIPPED, _FAILED = map(str, (
    JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.SKIPPED, JobStatus.FAILED))
# Indexes into a held row (the order of _COLUMNS).
(_STATUS, _ATTEMPT, _STARTED_AT, _COMPLETED_AT, _NEXT_RETRY_AT, _LAST_ERROR, _RESULT, _STARTED_SNAPSHOT,
 _NEXT_RETRY_NS, _COMPLETED_NS, _VERSION, _NODE) = (4, 5, 10, 11, 12, 13, 14, 22, 25, 26, 27, 28)


@PROJECTION.bulk_fold
class QueueFold:
    """``job_queue`` folded in memory: one row per job, each written once, in enqueue order (the
    order the live inserts give the table). Each handler sets the columns its live handler's
    statement sets; a job whose row was already written (held rows beyond ``BULK_ROWS_HELD`` are
    written oldest first) goes through the live handler's statement instead."""

    held: ClassVar[int] = BULK_ROWS_HELD  # a test lowers it to make the oldest rows go first

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}
        self.written = False
        self.handlers: dict[type[EventBase], Handler] = {
            JobEnqueued: self._enqueued, JobStarted: self._started, JobSucceeded: self._succeeded,
            JobRetryScheduled: self._retry, JobFailed: self._failed, JobRecovered: self._recovered,
            JobDead: self._dead, JobSkipped: self._skipped, JobDispatchFailed: self._dispatch_failed,
            ProjectionsPruned: self._pruned,
        }

    def flush(self, cur: sqlite3.Cursor, *, final: bool) -> None:
        keep = 0 if final else self.held // 2
        if final or len(self.rows) > self.held:
            oldest = list(itertools.islice(self.rows, len(self.rows) - keep))
            cur.executemany(_INSERT_ROWS, [self.rows.pop(job_id) for job_id in oldest])
            self.written = True

    def _enqueued(self, cur: sqlite3.Cursor, e: JobEnqueued, rec: Recorded) -> None:
        if e.job_id in self.rows:  # the live INSERT's primary key refuses it the same way
            raise sqlite3.IntegrityError("UNIQUE constraint failed: job_queue.job_id")
        self.rows[e.job_id] = [
            e.job_id, e.plugin, e.command, _json.encode(e.payload).decode(), _QUEUED, 1, e.max_attempts,
            e.submitted_by, e.dedupe_key, sql_ts(e.at), None, None, None, None, None, e.parent_job_id,
            e.source_event_id, e.event_context_id, e.schedule_id, e.pipeline, e.step_id, e.config_snapshot_id,
            None, rec.position, e.at, None, None, rec.version, None,
        ]

    def _started(self, cur: sqlite3.Cursor, e: JobStarted, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _started(cur, e, rec)
        row[_STATUS], row[_ATTEMPT], row[_STARTED_AT] = _RUNNING, e.attempt, sql_ts(e.at)
        row[_NEXT_RETRY_AT] = row[_NEXT_RETRY_NS] = None
        row[_STARTED_SNAPSHOT], row[_VERSION], row[_NODE] = e.config_snapshot_id, rec.version, e.node

    def _succeeded(self, cur: sqlite3.Cursor, e: JobSucceeded, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _succeeded(cur, e, rec)
        row[_STATUS], row[_COMPLETED_AT], row[_COMPLETED_NS] = _SUCCEEDED, sql_ts(e.at), e.at
        row[_RESULT], row[_LAST_ERROR], row[_VERSION] = e.result, None, rec.version

    def _retry(self, cur: sqlite3.Cursor, e: JobRetryScheduled, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _retry(cur, e, rec)
        row[_STATUS], row[_ATTEMPT] = _QUEUED, e.attempt + 1
        row[_NEXT_RETRY_AT], row[_NEXT_RETRY_NS] = sql_ts(e.next_retry_at), e.next_retry_at
        row[_LAST_ERROR], row[_VERSION] = e.error, rec.version

    def _failed(self, cur: sqlite3.Cursor, e: JobFailed, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _failed(cur, e, rec)
        row[_STATUS], row[_COMPLETED_AT], row[_COMPLETED_NS] = str(e.status), sql_ts(e.at), e.at
        row[_LAST_ERROR], row[_RESULT], row[_VERSION] = e.error, e.result, rec.version

    def _recovered(self, cur: sqlite3.Cursor, e: JobRecovered, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _recovered(cur, e, rec)
        row[_STATUS], row[_ATTEMPT] = _QUEUED, e.attempt
        row[_NEXT_RETRY_AT] = row[_NEXT_RETRY_NS] = None
        row[_LAST_ERROR], row[_VERSION] = e.error, rec.version

    def _dead(self, cur: sqlite3.Cursor, e: JobDead, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _dead(cur, e, rec)
        row[_STATUS], row[_COMPLETED_AT], row[_COMPLETED_NS] = _DEAD, sql_ts(e.at), e.at
        row[_LAST_ERROR], row[_VERSION] = e.error, rec.version

    def _skipped(self, cur: sqlite3.Cursor, e: JobSkipped, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _skipped(cur, e, rec)
        row[_STATUS], row[_COMPLETED_AT], row[_COMPLETED_NS] = _SKIPPED, sql_ts(e.at), e.at
        row[_LAST_ERROR], row[_VERSION] = None, rec.version

    def _dispatch_failed(self, cur: sqlite3.Cursor, e: JobDispatchFailed, rec: Recorded) -> None:
        row = self.rows.get(e.job_id)
        if row is None:
            return _dispatch_failed(cur, e, rec)
        row[_STATUS], row[_COMPLETED_AT], row[_COMPLETED_NS] = _FAILED, sql_ts(e.at), e.at
        row[_LAST_ERROR], row[_VERSION] = e.error, rec.version

    def _pruned(self, cur: sqlite3.Cursor, e: ProjectionsPruned, rec: Recorded) -> None:
        before = e.before.get("job_queue")
        if not before:
            return
        for job_id in [j for j, row in self.rows.items()
                       if row[_COMPLETED_NS] is not None and row[_COMPLETED_NS] < before and row[_STATUS] in TERMINAL]:
            del self.rows[job_id]
        if self.written:
            _pruned(cur, e, rec)


# --- typed readers ------------------------------------------------------------------------------
# The use cases read the queue only through these, inside the writer's transaction.


class QueuedJob(msgspec.Struct, frozen=True):
    """One ``job_queue`` row, as the use cases need it (times in Unix ns)."""

    job_id: str
    plugin: str
    command: str
    status: JobStatus
    attempt: int
    max_attempts: int
    submitted_by: str
    created_ns: int
    payload: dict[str, Any]
    dedupe_key: str | None
    schedule_id: str | None
    parent_job_id: str | None
    next_retry_ns: int | None
    last_error: str | None
    result: str | None
    completed_ns: int | None
    stream_version: int
    pipeline: str | None
    step_id: str | None
    event_context_id: str | None
    enqueue_position: int


class DedupeMatch(msgspec.Struct, frozen=True):
    """The jobs sharing a (plugin, command, dedupe_key): the oldest outstanding, the latest success."""

    outstanding_job_id: str | None = None
    last_success_job_id: str | None = None
    last_success_ns: int | None = None


_QUEUED_COLUMNS = (
    "job_id, plugin, command, status, attempt, max_attempts, submitted_by, created_ns, payload, dedupe_key,"
    " schedule_id, parent_job_id, next_retry_ns, last_error, result, completed_ns, stream_version, pipeline, step_id,"
    " event_context_id, enqueue_position"
)
_decode_payload = msgspec.json.Decoder(dict[str, Any])


def _queued(row: tuple[Any, ...]) -> QueuedJob:
    return QueuedJob(
        row[0], row[1], row[2], JobStatus(row[3]), row[4], row[5], row[6], row[7], _decode_payload.decode(row[8]),
        *row[9:],
    )


def find_job(cur: sqlite3.Cursor | sqlite3.Connection, job_id: str) -> QueuedJob | None:
    row = cur.execute(f"SELECT {_QUEUED_COLUMNS} FROM job_queue WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else _queued(row)


def status_of(cur: sqlite3.Cursor, job_id: str) -> JobStatus | None:
    row = cur.execute("SELECT status FROM job_queue WHERE job_id=?", (job_id,)).fetchone()
    return None if row is None else JobStatus(row[0])


def dedupe_match(cur: sqlite3.Cursor, plugin: str, command: str, key: str) -> DedupeMatch:
    outstanding = cur.execute(
        "SELECT job_id FROM job_queue WHERE plugin=? AND command=? AND dedupe_key=?"
        f" AND status IN {OUTSTANDING_SQL} ORDER BY created_ns LIMIT 1",
        (plugin, command, key),
    ).fetchone()
    success = cur.execute(
        "SELECT job_id, completed_ns FROM job_queue WHERE plugin=? AND command=? AND dedupe_key=?"
        " AND status='succeeded' ORDER BY completed_ns DESC LIMIT 1",
        (plugin, command, key),
    ).fetchone()
    return DedupeMatch(
        outstanding_job_id=outstanding[0] if outstanding else None,
        last_success_job_id=success[0] if success else None,
        last_success_ns=success[1] if success else None,
    )


def running_job_ids(cur: sqlite3.Cursor) -> list[str]:
    """Jobs left ``running``, oldest first (what boot recovery re-queues or kills)."""
    return [job_id for (job_id,) in cur.execute("SELECT job_id FROM job_queue WHERE status='running' ORDER BY created_ns")]


def running_nodes(cur: sqlite3.Cursor) -> list[tuple[str, str | None]]:
    """(job id, the node running it) of every ``running`` job, oldest first: on a shared store,
    which jobs a node's boot recovers (its own) and which a dead node left (docs/postgresql.md)."""
    return cur.execute("SELECT job_id, node FROM job_queue WHERE status='running' ORDER BY created_ns").fetchall()


def running_per_plugin(cur: sqlite3.Cursor, node: str | None = None) -> dict[str, int]:
    """Running jobs per plugin: every node's, or (``node``) one node's own."""
    if node is None:
        return dict(cur.execute("SELECT plugin, COUNT(*) FROM job_queue WHERE status='running' GROUP BY plugin").fetchall())
    return dict(cur.execute("SELECT plugin, COUNT(*) FROM job_queue WHERE status='running' AND node=? GROUP BY plugin",
                            (node,)).fetchall())


def running_dedupe_keys(cur: sqlite3.Cursor) -> set[tuple[str, str, str]]:
    """(plugin, command, dedupe_key) of every running job that has a key."""
    return set(cur.execute(
        "SELECT plugin, command, dedupe_key FROM job_queue WHERE status='running' AND dedupe_key IS NOT NULL"
    ).fetchall())


# The claim reads the queue lane by lane (jobs.md §5: a full lane never stalls the others), so
# its cost follows the number of lanes and the jobs it takes, never the depth of a backlog. Both
# statements walk the partial index ``job_queue_lane`` (queued rows only, by plugin, then FIFO).
_LANE_COLUMNS = ", ".join(f"j.{c.strip()}" for c in _QUEUED_COLUMNS.split(","))

# One statement: every plugin with queued work (an index skip-scan, one seek per lane) and the
# oldest claimable job of each (``plugin >= ''`` is every text: a seek, not a scan). ``INDEXED BY``: without table statistics the planner would prefer
# ``job_queue_claim`` (status=?) and read every queued row.
LANE_HEADS = f"""
WITH RECURSIVE lane(plugin) AS (
  SELECT (SELECT plugin FROM job_queue INDEXED BY job_queue_lane WHERE status='queued' AND plugin >= ''
          ORDER BY plugin LIMIT 1)
  UNION ALL
  SELECT (SELECT plugin FROM job_queue INDEXED BY job_queue_lane WHERE status='queued' AND plugin > lane.plugin
          ORDER BY plugin LIMIT 1)
  FROM lane WHERE lane.plugin IS NOT NULL
)
SELECT {_LANE_COLUMNS} FROM lane JOIN job_queue j ON j.rowid = (
  SELECT q.rowid FROM job_queue q INDEXED BY job_queue_lane
  WHERE q.status='queued' AND q.plugin = lane.plugin AND (q.next_retry_ns IS NULL OR q.next_retry_ns <= ?1)
  ORDER BY q.created_ns, q.enqueue_position LIMIT 1
)
WHERE lane.plugin IS NOT NULL
"""

# The next claimable jobs of one lane after a given one (keyset, so claimed rows need no offset).
LANE_NEXT = f"""
SELECT {_LANE_COLUMNS} FROM job_queue j INDEXED BY job_queue_lane
WHERE j.status='queued' AND j.plugin = ?1 AND (j.created_ns, j.enqueue_position) > (?2, ?3)
  AND (j.next_retry_ns IS NULL OR j.next_retry_ns <= ?4)
ORDER BY j.created_ns, j.enqueue_position LIMIT ?5
"""



def _on_postgres(sql: str) -> str:
    # PostgreSQL has no INDEXED BY (its planner keeps statistics), no rowid (the primary key is the
    # row's identity) and no numbered ``?N`` placeholders (each is used once, in order: ``?``).
    sql = sql.replace(" INDEXED BY job_queue_lane", "").replace("j.rowid", "j.job_id").replace("q.rowid", "q.job_id")
    return re.sub(r"\?\d", "?", sql)


_LANE_HEADS = {StoreKind.SQLITE: LANE_HEADS, StoreKind.POSTGRES: _on_postgres(LANE_HEADS)}
_LANE_NEXT = {StoreKind.SQLITE: LANE_NEXT, StoreKind.POSTGRES: _on_postgres(LANE_NEXT)}


def lane_heads(conn: sqlite3.Connection, now: int) -> list[QueuedJob]:
    """The oldest job of every lane that is claimable at ``now``."""
    return [_queued(row) for row in conn.execute(_LANE_HEADS[dialect_of(conn)], (now,)).fetchall()]


def lane_next(conn: sqlite3.Connection, after: QueuedJob, now: int, limit: int) -> list[QueuedJob]:
    """Up to ``limit`` claimable jobs of ``after``'s lane that come after it, oldest first."""
    rows = conn.execute(_LANE_NEXT[dialect_of(conn)],
                        (after.plugin, after.created_ns, after.enqueue_position, now, limit)).fetchall()
    return [_queued(row) for row in rows]


class RoutedChild(msgspec.Struct, frozen=True):
    """A child routed from one of its parent's events to a pipeline step."""

    source_event_id: str
    pipeline: str
    step_id: str
    plugin: str
    command: str


def routed_children(cur: sqlite3.Cursor, parent_job_id: str) -> list[RoutedChild]:
    """The parent's children that a routed event started (what makes a redelivery a no-op)."""
    rows = cur.execute(
        "SELECT source_event_id, pipeline, step_id, plugin, command FROM job_queue WHERE parent_job_id=?"
        " AND source_event_id IS NOT NULL AND pipeline IS NOT NULL AND step_id IS NOT NULL",
        (parent_job_id,),
    ).fetchall()
    return [RoutedChild(*row) for row in rows]


class StaleTerminal(msgspec.Struct, frozen=True):
    """Terminal rows that retention should have pruned: how many, and the oldest ``completed_at``."""

    count: int
    oldest: str | None


def stale_terminal(cur: sqlite3.Cursor | sqlite3.Connection, completed_before_ns: int) -> StaleTerminal:
    """Terminal ``job_queue`` rows completed before ``completed_before_ns`` (selfcheck's freshness)."""
    count, oldest = cur.execute(
        f"SELECT COUNT(*), MIN(completed_at) FROM job_queue WHERE status IN {TERMINAL_SQL} AND completed_ns < ?",
        (completed_before_ns,),
    ).fetchone()
    return StaleTerminal(count, oldest)
