"""Units of work for jobs: read current state inside the writer's transaction, decide, append.

Each function takes the writer's ``WriteTx``. Because the single writer runs them one after the
other (each in its own savepoint), a read followed by an append is atomic: two claims of one job,
or two enqueues racing past a dedupe check, cannot happen.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ductile.commands import breakers, jobs
from ductile.commands.errors import JobNotFound
from ductile.commands.jobs import AttemptResult, DedupeView, EnqueueJob, JobState
from ductile.config.model import DEFAULT_BREAKER_THRESHOLD
from ductile.events.log import ANY, NO_STREAM, WriteTx, read_stream
from ductile.events.record import Recorded
from ductile.events.types import (
    EventBase,
    JobDead,
    JobDeduped,
    JobFailed,
    JobSucceeded,
    PluginFactAppended,
    PluginStateChanged,
    breaker_stream,
    job_stream,
    plugin_stream,
)
from ductile.vocabulary import OUTSTANDING_SQL, CircuitState, DeadOutcome, JobStatus, PermanentReason

_json_decode = msgspec.json.Decoder(dict[str, Any])

JOB_COLUMNS = (
    "job_id, plugin, command, status, attempt, max_attempts, submitted_by, created_ns, payload, dedupe_key,"
    " schedule_id, parent_job_id, next_retry_ns, last_error, result, completed_ns, created_at, stream_version,"
    " pipeline, step_id, event_context_id"
)


class EnqueueOutcome(msgspec.Struct, frozen=True):
    job_id: str | None
    deduped: bool = False
    dedupe_reason: str | None = None
    existing_job_id: str | None = None
    position: int = 0


class ClaimedJob(msgspec.Struct, frozen=True):
    job_id: str
    plugin: str
    command: str
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    submitted_by: str
    created_at: int  # Unix ns, as in JobState
    schedule_id: str | None
    parent_job_id: str | None
    state: dict[str, Any]
    pipeline: str | None = None
    step_id: str | None = None
    context: dict[str, Any] | None = None  # the job's context record (baggage + ``ductile``)


def _row_to_state(row: tuple[Any, ...]) -> JobState:
    return JobState(
        job_id=row[0], plugin=row[1], command=row[2], status=JobStatus(row[3]), attempt=row[4], max_attempts=row[5],
        submitted_by=row[6], created_at=row[7], payload=_json_decode.decode(row[8]), dedupe_key=row[9],
        schedule_id=row[10], parent_job_id=row[11], next_retry_at=row[12], last_error=row[13], result=row[14],
        completed_at=row[15], pipeline=row[18], step_id=row[19], event_context_id=row[20],
    )


def load_job(conn: sqlite3.Connection | sqlite3.Cursor, job_id: str, tx: WriteTx | None = None) -> JobState | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM job_queue WHERE job_id = ?", (job_id,)).fetchone()
    if row is not None:
        if tx is not None:
            tx.known_version(job_stream(job_id), row[17])
        return _row_to_state(row)
    # Pruned from the queue: the log still knows the job.
    records = read_stream(conn if isinstance(conn, sqlite3.Connection) else conn.connection, job_stream(job_id))
    return jobs.fold([r.event for r in records]) if records else None


def dedupe_view(cur: sqlite3.Cursor, plugin: str, command: str, key: str) -> DedupeView:
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
    return DedupeView(
        outstanding_job_id=outstanding[0] if outstanding else None,
        last_success_job_id=success[0] if success else None,
        last_success_at=success[1] if success else None,
    )


def enqueue_recorded(tx: WriteTx, cmd: EnqueueJob) -> list[Recorded]:
    """Enqueue with the dedupe checks of jobs.md §4.1: the job's events, or one ``JobDeduped``."""
    view = dedupe_view(tx.cur, cmd.plugin, cmd.command, cmd.dedupe_key) if cmd.dedupe_key else DedupeView()
    events = jobs.decide_enqueue(cmd, None, view, tx.now)
    if isinstance(events[0], JobDeduped):
        return tx.append("dedupe", events, ANY)
    return tx.append(job_stream(cmd.job_id), events, NO_STREAM)


def enqueue(tx: WriteTx, cmd: EnqueueJob) -> EnqueueOutcome:
    recs = enqueue_recorded(tx, cmd)
    first = recs[0].event
    if isinstance(first, JobDeduped):
        return EnqueueOutcome(
            job_id=None, deduped=True, dedupe_reason=first.dedupe_reason, existing_job_id=first.existing_job_id
        )
    return EnqueueOutcome(job_id=cmd.job_id, position=recs[-1].position)


Threshold = Callable[[str], int]


def _default_threshold(_plugin: str) -> int:
    return DEFAULT_BREAKER_THRESHOLD


def apply(tx: WriteTx, cmd: jobs.Command, threshold: Threshold = _default_threshold) -> list[Recorded]:
    """Decide ``cmd`` against the job's current state and append the result (and its breaker effect)."""
    job_id = cmd.job_id
    job = load_job(tx.cur, job_id, tx)
    if job is None:
        raise JobNotFound(job_id)
    recs = tx.append(job_stream(job_id), jobs.decide(cmd, job, tx.now))
    return recs + breaker_effects(tx, job, recs, threshold(job.plugin))


# The claim reads the queue lane by lane (jobs.md §5: a full lane never stalls the others), so
# its cost follows the number of lanes and the jobs it takes, never the depth of a backlog. Both
# statements walk the partial index ``job_queue_lane`` (queued rows only, by plugin, then FIFO).
_LANE_COLUMNS = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))
_C_CREATED, _C_POSITION = 7, len(JOB_COLUMNS.split(","))  # created_ns; enqueue_position, appended below

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
SELECT {_LANE_COLUMNS}, j.enqueue_position FROM lane JOIN job_queue j ON j.rowid = (
  SELECT q.rowid FROM job_queue q INDEXED BY job_queue_lane
  WHERE q.status='queued' AND q.plugin = lane.plugin AND (q.next_retry_ns IS NULL OR q.next_retry_ns <= ?1)
  ORDER BY q.created_ns, q.enqueue_position LIMIT 1
)
WHERE lane.plugin IS NOT NULL
"""

# The next claimable jobs of one lane after a given one (keyset, so claimed rows need no offset).
LANE_NEXT = f"""
SELECT {_LANE_COLUMNS}, j.enqueue_position FROM job_queue j INDEXED BY job_queue_lane
WHERE j.status='queued' AND j.plugin = ?1 AND (j.created_ns, j.enqueue_position) > (?2, ?3)
  AND (j.next_retry_ns IS NULL OR j.next_retry_ns <= ?4)
ORDER BY j.created_ns, j.enqueue_position LIMIT ?5
"""

_LANE_PAGE = 16


class _Lanes:
    """The lanes' next claimable rows, merged oldest first (``created_ns``, then log position)."""

    def __init__(self, conn: sqlite3.Connection, now: int) -> None:
        self._conn = conn
        self._now = now
        self._heap: list[tuple[int, int, tuple[Any, ...]]] = []
        self._buffered: dict[str, list[tuple[Any, ...]]] = {}
        for row in conn.execute(LANE_HEADS, (now,)).fetchall():
            heapq.heappush(self._heap, (row[_C_CREATED], row[_C_POSITION], row))

    def pop(self) -> tuple[Any, ...] | None:
        return heapq.heappop(self._heap)[2] if self._heap else None

    def advance(self, row: tuple[Any, ...]) -> None:
        """Offer the row after ``row`` in its lane (call only while that lane can take more)."""
        plugin = row[1]
        buffered = self._buffered.get(plugin)
        if not buffered:
            buffered = self._conn.execute(
                LANE_NEXT, (plugin, row[_C_CREATED], row[_C_POSITION], self._now, _LANE_PAGE)
            ).fetchall()[::-1]
            self._buffered[plugin] = buffered
        if buffered:
            nxt = buffered.pop()
            heapq.heappush(self._heap, (nxt[_C_CREATED], nxt[_C_POSITION], nxt))


def claim_next(
    tx: WriteTx,
    max_workers: int,
    lane_limits: Mapping[str, int],
    unavailable: Callable[[str, str], str | None],
    scan_limit: int = 500,
    config_snapshot_id: str | None = None,
    threshold: Threshold = _default_threshold,
) -> tuple[list[ClaimedJob], list[Recorded]]:
    """Claim eligible jobs while fewer than ``max_workers`` run, oldest first, skipping full lanes.

    ``unavailable(plugin, command)`` returns ``plugin_unavailable`` / ``command_not_supported``
    for a job that can no longer run: it ends ``dead`` at claim without spawning (T11).
    ``scan_limit`` bounds the rows passed over in one claim (killed, or held back by a running
    duplicate), to keep the writer's transaction short; a lane that hits it waits for the next claim.
    """
    cur = tx.cur
    running: dict[str, int] = dict(
        cur.execute("SELECT plugin, COUNT(*) FROM job_queue WHERE status='running' GROUP BY plugin").fetchall()
    )
    busy: set[tuple[str, str, str]] | None = None

    def busy_keys() -> set[tuple[str, str, str]]:
        # Only jobs with a dedupe key need it; most claims never do.
        nonlocal busy
        if busy is None:
            busy = set(cur.execute(
                "SELECT plugin, command, dedupe_key FROM job_queue WHERE status='running' AND dedupe_key IS NOT NULL"
            ).fetchall())
        return busy

    claimed: list[ClaimedJob] = []
    killed: list[Recorded] = []
    free_slots = max_workers - sum(running.values())
    if free_slots <= 0:
        return claimed, killed

    def lane_open(plugin: str) -> bool:
        return running.get(plugin, 0) < lane_limits.get(plugin, 1)

    lanes = _Lanes(tx.conn, tx.now)
    states: dict[str, dict[str, Any]] = {}
    passed_over = 0
    while len(claimed) < free_slots and (row := lanes.pop()) is not None:
        plugin, command = row[1], row[2]
        if not lane_open(plugin):
            continue  # a full lane: its jobs wait, the others go on
        why = unavailable(plugin, command)
        if why is None and row[9] and (plugin, command, row[9]) in busy_keys():
            passed_over += 1  # a running duplicate holds it back (jobs.md §4.1 claim rule)
            if passed_over < scan_limit:
                lanes.advance(row)
            continue
        job = _row_to_state(row)
        tx.known_version(job_stream(job.job_id), row[17])
        if why is not None:
            text = (
                f"plugin {job.plugin} is not loaded or not enabled" if why == "plugin_unavailable"
                else f"command {job.command} is not supported by plugin {job.plugin}"
            )
            dead = tx.append(
                job_stream(job.job_id), jobs.decide(jobs.KillJob(job_id=job.job_id, reason=why, error=text), job, tx.now)
            )
            killed += dead + breaker_effects(tx, job, dead, threshold(job.plugin))
            passed_over += 1
            if passed_over < scan_limit:
                lanes.advance(row)
            continue
        tx.append(
            job_stream(job.job_id),
            jobs.decide(jobs.ClaimJob(job_id=job.job_id, config_snapshot_id=config_snapshot_id), job, tx.now),
        )
        running[job.plugin] = running.get(job.plugin, 0) + 1
        if job.dedupe_key:
            busy_keys().add((job.plugin, job.command, job.dedupe_key))
        if job.plugin not in states:
            states[job.plugin] = current_state(cur, job.plugin)
        claimed.append(
            ClaimedJob(
                job_id=job.job_id, plugin=job.plugin, command=job.command, attempt=job.attempt,
                max_attempts=job.max_attempts, payload=job.payload, submitted_by=job.submitted_by,
                created_at=job.created_at, schedule_id=job.schedule_id, parent_job_id=job.parent_job_id,
                state=states[job.plugin], pipeline=job.pipeline, step_id=job.step_id,
                context=_context_record(cur, job.event_context_id),
            )
        )
        if lane_open(plugin) and len(claimed) < free_slots:
            lanes.advance(row)
    return claimed, killed


def _context_record(cur: sqlite3.Cursor, context_id: str | None) -> dict[str, Any] | None:
    if context_id is None:
        return None
    row = cur.execute("SELECT context FROM event_contexts WHERE id=?", (context_id,)).fetchone()
    return _json_decode.decode(row[0]) if row else None


def current_state(cur: sqlite3.Cursor, plugin: str) -> dict[str, Any]:
    row = cur.execute("SELECT state FROM plugin_state WHERE plugin=?", (plugin,)).fetchone()
    return _json_decode.decode(row[0]) if row else {}


class StateChange(msgspec.Struct, frozen=True):
    """Plugin state to record with a successful attempt (already validated against the cap)."""

    plugin: str
    state: dict[str, Any]
    fact_type: str | None = None
    fact: dict[str, Any] | None = None
    command: str = ""


def complete(
    tx: WriteTx,
    job_id: str,
    attempt: int,
    result: AttemptResult,
    backoff_base: int,
    jitter: float,
    state_change: Callable[[dict[str, Any]], StateChange | None] | None = None,
    threshold: Threshold = _default_threshold,
    after: Callable[[WriteTx, JobState, list[EventBase]], list[Recorded]] | None = None,
) -> list[Recorded]:
    """Record how an attempt ended; on success (or a route error) apply the plugin's state.

    ``after(tx, job, outcome_events)`` (routing and hooks) runs in the same transaction and its
    child jobs are appended *before* the job's own terminal event: in the log, children always
    precede the terminal event of the job that caused them (pipelines.md acceptance).

    ``state_change(current_state)`` computes the new state from the state as it is *now*, inside
    the transaction, so concurrent jobs of one plugin merge in commit order. It may raise
    ``ductile.plugins.state.StateError``; the attempt then fails with ``state_error`` and nothing
    is applied.
    """
    from ductile.plugins.state import StateError

    job = load_job(tx.cur, job_id, tx)
    if job is None:
        raise JobNotFound(job_id)
    change: StateChange | None = None
    if state_change is not None and (result.outcome == jobs.OK):
        try:
            change = state_change(current_state(tx.cur, job.plugin))
        except StateError as exc:
            result = msgspec.structs.replace(result, error=str(exc), permanent_reason=PermanentReason.STATE_ERROR)
    cmd = jobs.CompleteAttempt(job_id=job_id, attempt=attempt, result=result, backoff_base=backoff_base, jitter=jitter)
    outcome = jobs.decide(cmd, job, tx.now)
    recs: list[Recorded] = []
    if change is not None:
        stream = plugin_stream(change.plugin)
        if change.fact_type is not None and change.fact is not None:
            seq_row = tx.cur.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM plugin_facts WHERE plugin_name=?", (change.plugin,)
            ).fetchone()
            recs += tx.append(stream, [
                PluginFactAppended(plugin=change.plugin, seq=seq_row[0] + 1, fact_type=change.fact_type,
                                   fact=change.fact, job_id=job_id, command=change.command, at=tx.now)
            ])
        recs += tx.append(stream, [PluginStateChanged(plugin=change.plugin, state=change.state, job_id=job_id, at=tx.now)])
    if after is not None:
        recs += after(tx, job, outcome)
    done = tx.append(job_stream(job_id), outcome)
    return recs + done + breaker_effects(tx, job, done, threshold(job.plugin))


def recover_running(tx: WriteTx, threshold: Threshold = _default_threshold) -> list[Recorded]:
    """Boot crash recovery: every job left ``running`` is re-queued or marked dead."""
    recs: list[Recorded] = []
    ids = [r[0] for r in tx.cur.execute("SELECT job_id FROM job_queue WHERE status='running' ORDER BY created_ns")]
    for job_id in ids:
        recs += apply(tx, jobs.RecoverJob(job_id=job_id), threshold)
    return recs


def breaker_effects(tx: WriteTx, job: JobState, recs: list[Recorded], threshold: int) -> list[Recorded]:
    """Count a scheduled job's terminal outcome against its (plugin, command) breaker, in the
    same transaction as the outcome. API, route, hook and webhook jobs never count."""
    if job.schedule_id is None:
        return []
    out: list[Recorded] = []
    for rec in recs:
        e = rec.event
        if isinstance(e, JobSucceeded):
            status, cancelled = JobStatus.SUCCEEDED, False
        elif isinstance(e, JobFailed):
            status, cancelled = e.status, False
        elif isinstance(e, JobDead):
            status, cancelled = JobStatus.DEAD, e.outcome == DeadOutcome.CANCELLED or e.reason.startswith("cancelled by scheduler")
        else:
            continue
        state = load_breaker(tx.cur, job.plugin, job.command) or breakers.BreakerState()
        out += tx.append(
            breaker_stream(job.plugin, job.command),
            breakers.on_terminal(state, job.plugin, job.command, job.job_id, status, cancelled, threshold, tx.now),
        )
    return out


def load_breaker(cur: sqlite3.Cursor, plugin: str, command: str) -> breakers.BreakerState | None:
    row = cur.execute(
        "SELECT state, failure_count, opened_ns, last_failure_ns, last_job_id FROM circuit_breakers"
        " WHERE plugin=? AND command=?",
        (plugin, command),
    ).fetchone()
    if row is None:
        return None
    return breakers.BreakerState(state=CircuitState(row[0]), failure_count=row[1], opened_at=row[2], last_failure_at=row[3],
                                 last_job_id=row[4])
