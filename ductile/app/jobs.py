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
from ductile.projections import breakers as breaker_records
from ductile.projections import contexts, plugin_state, queue
from ductile.projections.queue import QueuedJob
from ductile.vocabulary import DeadOutcome, JobStatus, PermanentReason


class EnqueueOutcome(msgspec.Struct, frozen=True):
    job_id: str | None
    deduped: bool = False
    dedupe_reason: str | None = None
    existing_job_id: str | None = None
    existing_status: JobStatus | None = None  # the existing job's status, read in the deciding transaction
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


def _state_of(job: QueuedJob) -> JobState:
    return JobState(
        job_id=job.job_id, plugin=job.plugin, command=job.command, status=job.status, attempt=job.attempt,
        max_attempts=job.max_attempts, submitted_by=job.submitted_by, created_at=job.created_ns, payload=job.payload,
        dedupe_key=job.dedupe_key, schedule_id=job.schedule_id, parent_job_id=job.parent_job_id,
        next_retry_at=job.next_retry_ns, last_error=job.last_error, result=job.result, completed_at=job.completed_ns,
        pipeline=job.pipeline, step_id=job.step_id, event_context_id=job.event_context_id,
    )


def load_job(conn: sqlite3.Connection | sqlite3.Cursor, job_id: str, tx: WriteTx | None = None) -> JobState | None:
    found = queue.find_job(conn, job_id)
    if found is not None:
        if tx is not None:
            tx.known_version(job_stream(job_id), found.stream_version)
        return _state_of(found)
    # Pruned from the queue: the log still knows the job.
    records = read_stream(conn if isinstance(conn, sqlite3.Connection) else conn.connection, job_stream(job_id))
    return jobs.fold([r.event for r in records]) if records else None


def dedupe_view(cur: sqlite3.Cursor, plugin: str, command: str, key: str) -> DedupeView:
    match = queue.dedupe_match(cur, plugin, command, key)
    return DedupeView(outstanding_job_id=match.outstanding_job_id, last_success_job_id=match.last_success_job_id,
                      last_success_at=match.last_success_ns)


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
        # An idempotent replay answers with the existing job's status (api.md §1); reading it here,
        # in the transaction that decided, cannot race the job's own progress.
        return EnqueueOutcome(
            job_id=None, deduped=True, dedupe_reason=first.dedupe_reason, existing_job_id=first.existing_job_id,
            existing_status=queue.status_of(tx.cur, first.existing_job_id),
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


# A lane that has handed out its buffered rows fetches this many more at once.
_LANE_PAGE = 16


class _Lanes:
    """The lanes' next claimable rows, merged oldest first (``created_ns``, then log position)."""

    def __init__(self, conn: sqlite3.Connection, now: int) -> None:
        self._conn = conn
        self._now = now
        # (created_ns, enqueue_position) is unique, so the heap never compares two jobs.
        self._heap: list[tuple[int, int, QueuedJob]] = []
        self._buffered: dict[str, list[QueuedJob]] = {}
        for job in queue.lane_heads(conn, now):
            heapq.heappush(self._heap, (job.created_ns, job.enqueue_position, job))

    def pop(self) -> QueuedJob | None:
        return heapq.heappop(self._heap)[2] if self._heap else None

    def advance(self, job: QueuedJob) -> None:
        """Offer the job after ``job`` in its lane (call only while that lane can take more)."""
        buffered = self._buffered.get(job.plugin)
        if not buffered:
            buffered = queue.lane_next(self._conn, job, self._now, _LANE_PAGE)[::-1]
            self._buffered[job.plugin] = buffered
        if buffered:
            nxt = buffered.pop()
            heapq.heappush(self._heap, (nxt.created_ns, nxt.enqueue_position, nxt))


def claim_next(
    tx: WriteTx,
    max_workers: int,
    lane_limits: Mapping[str, int],
    unavailable: Callable[[str, str], str | None],
    scan_limit: int = 500,
    config_snapshot_id: str | None = None,
    threshold: Threshold = _default_threshold,
    node: str | None = None,
) -> tuple[list[ClaimedJob], list[Recorded]]:
    """Claim eligible jobs while fewer than ``max_workers`` run, oldest first, skipping full lanes.

    ``unavailable(plugin, command)`` returns ``plugin_unavailable`` / ``command_not_supported``
    for a job that can no longer run: it ends ``dead`` at claim without spawning (T11).
    ``scan_limit`` bounds the rows passed over in one claim (killed, or held back by a running
    duplicate), to keep the writer's transaction short; a lane that hits it waits for the next claim.

    Several nodes on one PostgreSQL store: this unit runs under the log's write lock, which every
    node's writer takes (postgres_store.py), so the queue read and the ``JobStarted`` append are
    one step cluster-wide: two nodes never claim one job, and ``lane_limits`` (a plugin's
    ``parallelism``) counts the running jobs of every node. ``max_workers`` is this node's own
    slots: ``free_slots`` subtracts only the jobs ``node`` runs. ``JobStarted`` names ``node``.
    """
    cur = tx.cur
    running = queue.running_per_plugin(cur)
    busy: set[tuple[str, str, str]] | None = None

    def busy_keys() -> set[tuple[str, str, str]]:
        # Only jobs with a dedupe key need it; most claims never do.
        nonlocal busy
        if busy is None:
            busy = queue.running_dedupe_keys(cur)
        return busy

    claimed: list[ClaimedJob] = []
    killed: list[Recorded] = []
    mine = running if node is None else queue.running_per_plugin(cur, node)
    free_slots = max_workers - sum(mine.values())
    if free_slots <= 0:
        return claimed, killed

    def lane_open(plugin: str) -> bool:
        return running.get(plugin, 0) < lane_limits.get(plugin, 1)

    lanes = _Lanes(tx.conn, tx.now)
    states: dict[str, dict[str, Any]] = {}
    passed_over = 0
    while len(claimed) < free_slots and (queued := lanes.pop()) is not None:
        plugin, command = queued.plugin, queued.command
        if not lane_open(plugin):
            continue  # a full lane: its jobs wait, the others go on
        why = unavailable(plugin, command)
        if why is None and queued.dedupe_key and (plugin, command, queued.dedupe_key) in busy_keys():
            passed_over += 1  # a running duplicate holds it back (jobs.md §4.1 claim rule)
            if passed_over < scan_limit:
                lanes.advance(queued)
            continue
        job = _state_of(queued)
        tx.known_version(job_stream(job.job_id), queued.stream_version)
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
                lanes.advance(queued)
            continue
        tx.append(
            job_stream(job.job_id),
            jobs.decide(jobs.ClaimJob(job_id=job.job_id, config_snapshot_id=config_snapshot_id, node=node), job, tx.now),
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
            lanes.advance(queued)
    return claimed, killed


def _context_record(cur: sqlite3.Cursor, context_id: str | None) -> dict[str, Any] | None:
    found = contexts.find_context(cur, context_id) if context_id is not None else None
    return found.context if found is not None else None


def current_state(cur: sqlite3.Cursor, plugin: str) -> dict[str, Any]:
    found = plugin_state.find_state(cur, plugin)
    return found.state if found is not None else {}


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
            recs += tx.append(stream, [
                PluginFactAppended(plugin=change.plugin, seq=plugin_state.last_fact_seq(tx.cur, change.plugin) + 1, fact_type=change.fact_type,
                                   fact=change.fact, job_id=job_id, command=change.command, at=tx.now)
            ])
        recs += tx.append(stream, [PluginStateChanged(plugin=change.plugin, state=change.state, job_id=job_id, at=tx.now)])
    if after is not None:
        recs += after(tx, job, outcome)
    done = tx.append(job_stream(job_id), outcome)
    return recs + done + breaker_effects(tx, job, done, threshold(job.plugin))


def recover_running(tx: WriteTx, threshold: Threshold = _default_threshold) -> list[Recorded]:
    """Boot crash recovery on a store only this gateway uses: every job left ``running`` is
    re-queued or marked dead."""
    recs: list[Recorded] = []
    for job_id in queue.running_job_ids(tx.cur):
        recs += apply(tx, jobs.RecoverJob(job_id=job_id), threshold)
    return recs


def recover_nodes(tx: WriteTx, nodes: Callable[[str | None], bool], threshold: Threshold = _default_threshold) -> list[Recorded]:
    """Crash recovery on a shared store: re-queue (or mark dead) the running jobs of the nodes
    ``nodes(node)`` picks (a booting node's own previous jobs, a node whose lease expired) and
    leave every other node's running jobs alone. Their attempt number moves on, so a late result
    of the interrupted attempt is refused by the decider (``CompleteAttempt`` of a stale attempt)."""
    recs: list[Recorded] = []
    for job_id, node in queue.running_nodes(tx.cur):
        if nodes(node):
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
    found = breaker_records.find_breaker(cur, plugin, command)
    if found is None:
        return None
    return breakers.BreakerState(state=found.state, failure_count=found.failure_count, opened_at=found.opened_ns,
                                 last_failure_at=found.last_failure_ns, last_job_id=found.last_job_id)
