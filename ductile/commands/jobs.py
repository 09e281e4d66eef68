"""The job decider: the job state machine, the retry decision and the backoff formula.

Pure functions only: the caller supplies the job's current state, the time ``now`` (Unix ns) and,
for a failed attempt, the random ``jitter`` in [0, 1) used for backoff.

States: queued → running → succeeded | failed | timed_out | dead, running → queued on a retry or
crash recovery, queued → skipped | dead. Terminal states are final.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ductile.commands.errors import AlreadyExists, InvalidTransition
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
    StopwatchSub,
)
from ductile.vocabulary import (
    OUTSTANDING,
    AttemptOutcome,
    DeadOutcome,
    DedupeReason,
    JobStatus,
    PermanentReason,
    RetryReason,
)
from ductile.vocabulary import TERMINAL as TERMINAL  # re-exported: the one set, named through the decider

NS = 1_000_000_000
EX_CONFIG = 78

# Outcomes of one attempt (job_attempts.outcome), under the short names the runner uses.
OK, ERROR = AttemptOutcome.OK, AttemptOutcome.ERROR
TIMEOUT, SPAWN_ERROR = AttemptOutcome.TIMEOUT, AttemptOutcome.SPAWN_ERROR


class JobState(msgspec.Struct, kw_only=True):
    job_id: str
    plugin: str
    command: str
    status: JobStatus
    attempt: int
    max_attempts: int
    submitted_by: str
    created_at: int  # Unix ns
    payload: dict[str, Any] = {}
    dedupe_key: str | None = None
    schedule_id: str | None = None
    parent_job_id: str | None = None
    pipeline: str | None = None
    step_id: str | None = None
    event_context_id: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    next_retry_at: int | None = None
    last_error: str | None = None
    result: str | None = None


# --- commands ----------------------------------------------------------------------------------


class EnqueueJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    plugin: str
    command: str
    payload: dict[str, Any]
    submitted_by: str
    max_attempts: int
    dedupe_key: str | None = None
    dedupe_ttl: int = 0  # ns; 0 disables the recent-success check
    parent_job_id: str | None = None
    source_event_id: str | None = None
    event_context_id: str | None = None
    schedule_id: str | None = None
    pipeline: str | None = None
    step_id: str | None = None
    config_snapshot_id: str | None = None
    direct: bool = False


class DedupeView(msgspec.Struct, frozen=True):
    """What the queue knows about jobs sharing the command's (dedupe_key, plugin, command)."""

    outstanding_job_id: str | None = None
    last_success_job_id: str | None = None
    last_success_at: int | None = None


class ClaimJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    config_snapshot_id: str | None = None
    node: str | None = None  # the claiming gateway node (several nodes on one PostgreSQL store)


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ended, as the runner observed it."""

    outcome: AttemptOutcome
    error: str = ""
    result: str | None = None  # raw stdout of the attempt
    exit_code: int | None = None
    duration_ms: int = 0
    stderr: str = ""
    plugin_retry: bool = True  # the response's ``retry`` field
    permanent_reason: PermanentReason | None = None
    subs: list[StopwatchSub] = []  # the plugin's timing breakdown (``ductile_stopwatch_subs``)


class CompleteAttempt(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    attempt: int
    result: AttemptResult
    backoff_base: int  # ns
    jitter: float = 0.0


class RecoverJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class KillJob(msgspec.Struct, frozen=True, kw_only=True):
    """End a job as ``dead`` from outside its own answer (unavailable plugin, cancellation)."""

    job_id: str
    reason: str
    error: str


class SkipJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    reason: str = "condition false"


Command = EnqueueJob | ClaimJob | CompleteAttempt | RecoverJob | KillJob | SkipJob


# --- policy ------------------------------------------------------------------------------------


def backoff_ns(base: int, failed_attempt: int, jitter: float) -> int:
    """``min(base·2^(n-1), 100·base) + U[0, base/4]``, with ``jitter`` the uniform draw in [0, 1)."""
    nominal = min(base * (2 ** (failed_attempt - 1)), 100 * base)
    return nominal + int(jitter * base / 4)


def nominal_schedule_ms(base: int, max_attempts: int) -> list[int]:
    return [min(base * 2 ** (n - 1), 100 * base) // 1_000_000 for n in range(1, max_attempts)]


def retry_decision(result: AttemptResult) -> tuple[bool, str]:
    """Is a failed attempt retryable, and the decision reason (jobs.md §7)."""
    if result.exit_code == EX_CONFIG:
        return False, RetryReason.EXIT_CODE_78
    if result.permanent_reason is not None:
        return False, result.permanent_reason
    if result.outcome == ERROR and not result.plugin_retry:
        return False, RetryReason.PLUGIN_RETRY_FALSE
    reasons = {ERROR: RetryReason.PLUGIN_ERROR, TIMEOUT: RetryReason.TIMEOUT, SPAWN_ERROR: RetryReason.SPAWN_ERROR}
    reason = reasons[result.outcome]
    return True, reason


# --- decide ------------------------------------------------------------------------------------


def duplicate_of(dedupe: DedupeView, ttl: int, now: int) -> tuple[DedupeReason, str] | None:
    """The dedupe rule (jobs.md §4.1), the one every enqueue and routed dispatch with a key obeys:
    an outstanding job with the key wins; else a success within ``ttl`` ns, and a ``ttl`` of 0
    disables that check. Returns (why, the existing job's id), or None to enqueue."""
    if dedupe.outstanding_job_id is not None:
        return DedupeReason.OUTSTANDING, dedupe.outstanding_job_id
    if ttl > 0 and dedupe.last_success_at is not None and dedupe.last_success_at >= now - ttl \
            and dedupe.last_success_job_id is not None:
        return DedupeReason.RECENT_SUCCESS, dedupe.last_success_job_id
    return None


def decide_enqueue(cmd: EnqueueJob, existing: JobState | None, dedupe: DedupeView, now: int) -> list[EventBase]:
    if existing is not None:
        raise AlreadyExists(cmd.job_id)
    duplicate = duplicate_of(dedupe, cmd.dedupe_ttl, now) if cmd.dedupe_key else None
    if duplicate is not None:
        reason, other = duplicate
        return [
            JobDeduped(
                plugin=cmd.plugin, command=cmd.command, submitted_by=cmd.submitted_by,
                dedupe_key=cmd.dedupe_key, dedupe_reason=reason, existing_job_id=other, at=now,
            )
        ]
    return [
        JobEnqueued(
            job_id=cmd.job_id, plugin=cmd.plugin, command=cmd.command, payload=cmd.payload,
            submitted_by=cmd.submitted_by, max_attempts=max(1, cmd.max_attempts),
            dedupe_key=cmd.dedupe_key or None, parent_job_id=cmd.parent_job_id,
            source_event_id=cmd.source_event_id, event_context_id=cmd.event_context_id,
            schedule_id=cmd.schedule_id, pipeline=cmd.pipeline, step_id=cmd.step_id,
            config_snapshot_id=cmd.config_snapshot_id, direct=cmd.direct, at=now,
        )
    ]


def identity(job: JobState) -> dict[str, Any]:
    """The job fields every later event repeats (see ``ductile.events.types``)."""
    return {"plugin": job.plugin, "command": job.command, "submitted_by": job.submitted_by,
            "schedule_id": job.schedule_id}


def decide(cmd: Command, job: JobState | None, now: int) -> list[EventBase]:
    match cmd:
        case EnqueueJob():
            return decide_enqueue(cmd, job, DedupeView(), now)
        case ClaimJob() if job is not None and job.status == JobStatus.QUEUED:
            return [JobStarted(job_id=job.job_id, attempt=job.attempt, config_snapshot_id=cmd.config_snapshot_id,
                               max_attempts=job.max_attempts, parent_job_id=job.parent_job_id, node=cmd.node,
                               at=now, **identity(job))]
        case CompleteAttempt() if job is not None and job.status == JobStatus.RUNNING and job.attempt == cmd.attempt:
            return _complete(cmd, job, now)
        case RecoverJob() if job is not None and job.status == JobStatus.RUNNING:
            return _recover(job, now)
        case KillJob() if job is not None and job.status in OUTSTANDING:
            outcome = DeadOutcome.CANCELLED if job.status == JobStatus.RUNNING else None
            return [
                JobDead(job_id=job.job_id, attempt=job.attempt, from_status=job.status, reason=cmd.reason,
                        error=cmd.error, outcome=outcome, at=now, **identity(job))
            ]
        case SkipJob() if job is not None and job.status == JobStatus.QUEUED:
            return [JobSkipped(job_id=job.job_id, reason=cmd.reason, attempt=job.attempt, at=now, **identity(job))]
    raise InvalidTransition(type(cmd).__name__, job.status if job else None)


def _complete(cmd: CompleteAttempt, job: JobState, now: int) -> list[EventBase]:
    r = cmd.result
    common: dict[str, Any] = {
        "job_id": job.job_id, "attempt": job.attempt, "exit_code": r.exit_code,
        "duration_ms": r.duration_ms, "stderr": r.stderr, "subs": r.subs, "at": now, **identity(job),
    }
    if r.outcome == OK and r.permanent_reason is None:
        return [JobSucceeded(result=r.result or "", **common)]
    retryable, reason = retry_decision(r)
    status = JobStatus.TIMED_OUT if r.outcome == TIMEOUT else JobStatus.FAILED
    failure: dict[str, Any] = {"outcome": r.outcome, "error": r.error, "max_attempts": job.max_attempts,
                               "plugin_retry": r.plugin_retry}
    if not retryable:
        return [JobFailed(status=status, reason=reason, result=r.result, **failure, **common)]
    if job.attempt >= job.max_attempts:
        return [JobFailed(status=status, reason=RetryReason.ATTEMPTS_EXHAUSTED, exhausted=True, result=r.result, **failure,
                          **common)]
    delay = backoff_ns(cmd.backoff_base, job.attempt, cmd.jitter)
    return [
        JobRetryScheduled(reason=reason, next_retry_at=now + delay, backoff_ms=delay // 1_000_000,
                          backoff_base_ms=cmd.backoff_base // 1_000_000, **failure, **common)
    ]


def _recover(job: JobState, now: int) -> list[EventBase]:
    if job.attempt + 1 <= job.max_attempts:
        return [
            JobRecovered(job_id=job.job_id, attempt=job.attempt + 1, max_attempts=job.max_attempts,
                         error=f"interrupted by gateway restart during attempt {job.attempt}", at=now, **identity(job))
        ]
    return [
        JobDead(
            job_id=job.job_id, attempt=job.attempt, from_status=JobStatus.RUNNING, reason=RetryReason.CRASH_RECOVERY_EXHAUSTED,
            error=f"Job marked dead during crash recovery: max attempts ({job.max_attempts}) reached",
            outcome=DeadOutcome.INTERRUPTED, recovery=True, at=now, **identity(job),
        )
    ]


# --- evolve ------------------------------------------------------------------------------------


def evolve(job: JobState | None, event: EventBase) -> JobState:
    """Fold one job event; refuses any event that breaks the state machine."""
    match event:
        case JobEnqueued() if job is None:
            return JobState(
                job_id=event.job_id, plugin=event.plugin, command=event.command, status=JobStatus.QUEUED, attempt=1,
                max_attempts=event.max_attempts, submitted_by=event.submitted_by, created_at=event.at,
                payload=event.payload, dedupe_key=event.dedupe_key, schedule_id=event.schedule_id,
                parent_job_id=event.parent_job_id, pipeline=event.pipeline, step_id=event.step_id,
                event_context_id=event.event_context_id,
            )
        case JobStarted() if job is not None and job.status == JobStatus.QUEUED:
            return msgspec.structs.replace(
                job, status=JobStatus.RUNNING, attempt=event.attempt, started_at=event.at, next_retry_at=None
            )
        case JobSucceeded() if job is not None and job.status == JobStatus.RUNNING:
            return msgspec.structs.replace(
                job, status=JobStatus.SUCCEEDED, completed_at=event.at, result=event.result, last_error=None
            )
        case JobRetryScheduled() if job is not None and job.status == JobStatus.RUNNING:
            return msgspec.structs.replace(
                job, status=JobStatus.QUEUED, attempt=event.attempt + 1, next_retry_at=event.next_retry_at,
                last_error=event.error,
            )
        case JobFailed() if job is not None and job.status == JobStatus.RUNNING:
            return msgspec.structs.replace(
                job, status=event.status, completed_at=event.at, last_error=event.error, result=event.result
            )
        case JobRecovered() if job is not None and job.status == JobStatus.RUNNING:
            return msgspec.structs.replace(
                job, status=JobStatus.QUEUED, attempt=event.attempt, next_retry_at=None, last_error=event.error
            )
        case JobDead() if job is not None and job.status in OUTSTANDING:
            return msgspec.structs.replace(job, status=JobStatus.DEAD, completed_at=event.at, last_error=event.error)
        case JobSkipped() if job is not None and job.status == JobStatus.QUEUED:
            return msgspec.structs.replace(job, status=JobStatus.SKIPPED, completed_at=event.at, last_error=None)
        case JobDispatchFailed() if job is not None and job.status == JobStatus.QUEUED and job.started_at is None:
            return msgspec.structs.replace(job, status=JobStatus.FAILED, completed_at=event.at, last_error=event.error)
    raise InvalidTransition(type(event).__name__, job.status if job else None)


def fold(events: list[EventBase]) -> JobState | None:
    job: JobState | None = None
    for e in events:
        job = evolve(job, e)
    return job
