"""The job decider: state machine, retry decision and backoff (jobs.md §2, §7, §8)."""

from __future__ import annotations

import pytest

from ductile.commands import jobs
from ductile.commands.errors import InvalidTransition
from ductile.commands.jobs import AttemptResult, CompleteAttempt, DedupeView, EnqueueJob, JobState
from ductile.events.types import (
    JobDead,
    JobDeduped,
    JobEnqueued,
    JobFailed,
    JobRecovered,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
)

S = 1_000_000_000
NOW = 1_800_000_000 * S
BASE = 30 * S


def running(attempt: int = 1, max_attempts: int = 4) -> JobState:
    return JobState(job_id="j1", plugin="p", command="poll", status="running", attempt=attempt,
                    max_attempts=max_attempts, submitted_by="api", created_at=NOW - S)


def complete(result: AttemptResult, job: JobState | None = None, jitter: float = 0.0) -> list:
    job = job or running()
    return jobs.decide(CompleteAttempt(job_id="j1", attempt=job.attempt, result=result, backoff_base=BASE,
                                       jitter=jitter), job, NOW)


def test_ok_response_succeeds_whatever_the_exit_code() -> None:
    [event] = complete(AttemptResult(outcome="ok", result='{"status":"ok"}', exit_code=3))
    assert isinstance(event, JobSucceeded)
    assert event.exit_code == 3


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (AttemptResult(outcome="error", error="x", plugin_retry=False), "plugin_retry_false"),
        (AttemptResult(outcome="error", error="x", exit_code=78), "exit_code_78"),
        (AttemptResult(outcome="error", error="x", plugin_retry=True, exit_code=78), "exit_code_78"),
        (AttemptResult(outcome="spawn_error", error="x", exit_code=78), "exit_code_78"),
        (AttemptResult(outcome="ok", error="failed to route events: x", permanent_reason="route_error"), "route_error"),
    ],
)
def test_non_retryable_failures_end_failed_after_one_attempt(result: AttemptResult, reason: str) -> None:
    [event] = complete(result)
    assert isinstance(event, JobFailed)
    assert event.status == "failed"
    assert event.reason == reason
    assert not event.exhausted


@pytest.mark.parametrize(("outcome", "reason"), [("error", "plugin_error"), ("timeout", "timeout"),
                                                 ("spawn_error", "spawn_error")])
def test_retryable_failure_schedules_a_retry(outcome: str, reason: str) -> None:
    [event] = complete(AttemptResult(outcome=outcome, error="boom"))
    assert isinstance(event, JobRetryScheduled)
    assert event.reason == reason
    assert event.next_retry_at == NOW + 30 * S


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 30, 37.5), (2, 60, 67.5), (3, 120, 127.5)])
@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999])
def test_backoff_delays_stay_inside_the_documented_windows(attempt: int, low: float, high: float, jitter: float) -> None:
    [event] = complete(AttemptResult(outcome="error", error="x"), running(attempt), jitter)
    delay = (event.next_retry_at - NOW) / S
    assert low <= delay <= high


def test_backoff_is_capped_at_one_hundred_bases() -> None:
    assert jobs.backoff_ns(BASE, 20, 0.0) == 100 * BASE


def test_fourth_failure_with_defaults_is_terminal_and_exhausted() -> None:
    [event] = complete(AttemptResult(outcome="error", error="x"), running(4))
    assert isinstance(event, JobFailed)
    assert event.exhausted and event.reason == "attempts_exhausted"


def test_timeout_that_exhausts_attempts_ends_timed_out() -> None:
    [event] = complete(AttemptResult(outcome="timeout", error="plugin execution timed out after 1s"), running(4))
    assert isinstance(event, JobFailed)
    assert event.status == "timed_out"


def test_crash_recovery_requeues_with_next_attempt_and_no_backoff() -> None:
    [event] = jobs.decide(jobs.RecoverJob(job_id="j1"), running(2), NOW)
    assert isinstance(event, JobRecovered)
    assert event.attempt == 3
    assert event.error == "interrupted by gateway restart during attempt 2"


def test_crash_recovery_at_max_attempts_marks_dead_with_exact_message() -> None:
    [event] = jobs.decide(jobs.RecoverJob(job_id="j1"), running(4, 4), NOW)
    assert isinstance(event, JobDead)
    assert event.reason == "crash_recovery_exhausted"
    assert event.error == "Job marked dead during crash recovery: max attempts (4) reached"


def enqueue_cmd(key: str | None = "k", ttl: int = 3600 * S) -> EnqueueJob:
    return EnqueueJob(job_id="j2", plugin="p", command="poll", payload={}, submitted_by="api", max_attempts=4,
                      dedupe_key=key, dedupe_ttl=ttl)


def test_enqueue_with_outstanding_duplicate_is_deduped() -> None:
    [event] = jobs.decide_enqueue(enqueue_cmd(), None, DedupeView(outstanding_job_id="j1"), NOW)
    assert isinstance(event, JobDeduped)
    assert (event.dedupe_reason, event.existing_job_id) == ("outstanding", "j1")


def test_recent_success_inside_ttl_dedupes_and_outside_does_not() -> None:
    inside = DedupeView(last_success_job_id="j1", last_success_at=NOW - 10 * S)
    outside = DedupeView(last_success_job_id="j1", last_success_at=NOW - 7200 * S)
    assert isinstance(jobs.decide_enqueue(enqueue_cmd(), None, inside, NOW)[0], JobDeduped)
    assert isinstance(jobs.decide_enqueue(enqueue_cmd(), None, outside, NOW)[0], JobEnqueued)


def test_zero_ttl_disables_only_the_recent_success_check() -> None:
    recent = DedupeView(last_success_job_id="j1", last_success_at=NOW - S)
    assert isinstance(jobs.decide_enqueue(enqueue_cmd(ttl=0), None, recent, NOW)[0], JobEnqueued)
    busy = DedupeView(outstanding_job_id="j1")
    assert isinstance(jobs.decide_enqueue(enqueue_cmd(ttl=0), None, busy, NOW)[0], JobDeduped)


def test_without_a_dedupe_key_nothing_is_deduped() -> None:
    busy = DedupeView(outstanding_job_id="j1")
    assert isinstance(jobs.decide_enqueue(enqueue_cmd(key=None), None, busy, NOW)[0], JobEnqueued)


@pytest.mark.parametrize("status", ["succeeded", "failed", "timed_out", "dead", "skipped"])
def test_terminal_jobs_refuse_every_command(status: str) -> None:
    job = JobState(job_id="j1", plugin="p", command="poll", status=status, attempt=1, max_attempts=4,
                   submitted_by="api", created_at=NOW)
    for cmd in (jobs.ClaimJob(job_id="j1"), jobs.RecoverJob(job_id="j1"), jobs.SkipJob(job_id="j1"),
                jobs.KillJob(job_id="j1", reason="r", error="e"),
                CompleteAttempt(job_id="j1", attempt=1, result=AttemptResult(outcome="ok"), backoff_base=BASE)):
        with pytest.raises(InvalidTransition):
            jobs.decide(cmd, job, NOW)


def test_a_stale_completion_for_an_old_attempt_is_refused() -> None:
    with pytest.raises(InvalidTransition):
        jobs.decide(CompleteAttempt(job_id="j1", attempt=1, result=AttemptResult(outcome="ok"), backoff_base=BASE),
                    running(2), NOW)


def test_evolve_follows_a_retry_then_success_stream() -> None:
    stream = [
        JobEnqueued(job_id="j1", plugin="p", command="poll", payload={}, submitted_by="api", max_attempts=4, at=1),
        JobStarted(job_id="j1", attempt=1, at=2),
        JobRetryScheduled(job_id="j1", attempt=1, outcome="error", error="x", reason="plugin_error",
                          next_retry_at=10, backoff_ms=0, at=3),
        JobStarted(job_id="j1", attempt=2, at=11),
        JobSucceeded(job_id="j1", attempt=2, result="{}", at=12),
    ]
    job = jobs.fold(stream)
    assert job is not None
    assert (job.status, job.attempt, job.created_at, job.completed_at) == ("succeeded", 2, 1, 12)


def test_evolve_refuses_an_event_that_breaks_the_state_machine() -> None:
    enqueued = JobEnqueued(job_id="j1", plugin="p", command="poll", payload={}, submitted_by="api", max_attempts=4, at=1)
    with pytest.raises(InvalidTransition):
        jobs.fold([enqueued, JobSucceeded(job_id="j1", attempt=1, result="", at=2)])
