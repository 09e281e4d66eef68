"""The circuit breaker decider, per (plugin, command), for scheduled jobs only (jobs.md §9)."""

from __future__ import annotations

import msgspec

from ductile.commands.errors import InvalidTransition
from ductile.events.types import BreakerFailureCounted, BreakerProbeEnqueued, BreakerTransitioned, EventBase
from ductile.vocabulary import FAILURES, CircuitState, JobStatus

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class BreakerState(msgspec.Struct, kw_only=True):
    state: CircuitState = CLOSED
    failure_count: int = 0
    opened_at: int | None = None
    last_failure_at: int | None = None
    last_job_id: str | None = None
    updated_at: int | None = None

    def cooling(self, now: int, reset_after: int) -> bool:
        return self.state == OPEN and self.opened_at is not None and now < self.opened_at + reset_after


def on_terminal(
    s: BreakerState, plugin: str, command: str, job_id: str, status: JobStatus, cancelled: bool, threshold: int, now: int
) -> list[EventBase]:
    """A scheduled job ended. Cancellations never count."""
    if cancelled:
        return []
    if status == JobStatus.SUCCEEDED:
        if s.state != CLOSED:
            return [BreakerTransitioned(plugin=plugin, command=command, from_state=s.state, to_state=CLOSED,
                                        failure_count=0, reason="success", job_id=job_id, at=now)]
        if s.failure_count:
            return [BreakerFailureCounted(plugin=plugin, command=command, failure_count=0, job_id=job_id, at=now)]
        return []
    if status not in FAILURES:
        return []
    count = s.failure_count + 1
    if s.state == HALF_OPEN or (s.state == CLOSED and count >= threshold):
        return [BreakerTransitioned(plugin=plugin, command=command, from_state=s.state, to_state=OPEN,
                                    failure_count=count, reason="failure_threshold", job_id=job_id,
                                    opened_at=now, last_failure_at=now, at=now)]
    return [BreakerFailureCounted(plugin=plugin, command=command, failure_count=count, job_id=job_id,
                                  last_failure_at=now, at=now)]


def on_probe(s: BreakerState, plugin: str, command: str, job_id: str, now: int) -> list[EventBase]:
    """The cooldown elapsed: this occurrence is the one probe."""
    if s.state != OPEN:
        raise InvalidTransition("probe", s.state)
    return [BreakerTransitioned(plugin=plugin, command=command, from_state=OPEN, to_state=HALF_OPEN,
                                failure_count=s.failure_count, reason="cooldown_elapsed", job_id=job_id,
                                opened_at=s.opened_at, last_failure_at=s.last_failure_at, at=now)]


def on_reprobe(s: BreakerState, plugin: str, command: str, job_id: str, now: int) -> list[EventBase]:
    """A half-open breaker whose probe is no longer outstanding: this occurrence is the new probe.
    The breaker stays half_open, so nothing is a transition (jobs.md §9: one per state change)."""
    if s.state != HALF_OPEN:
        raise InvalidTransition("reprobe", s.state)
    return [BreakerProbeEnqueued(plugin=plugin, command=command, job_id=job_id, at=now)]


def on_reset(s: BreakerState | None, plugin: str, command: str, now: int) -> list[EventBase]:
    """Operator reset; a closed or never-used breaker is a no-op."""
    if s is None or (s.state == CLOSED and s.failure_count == 0):
        return []
    return [BreakerTransitioned(plugin=plugin, command=command, from_state=s.state, to_state=CLOSED,
                                failure_count=0, reason="manual_reset", at=now)]


def evolve(s: BreakerState | None, e: EventBase) -> BreakerState:
    s = s or BreakerState()
    if isinstance(e, BreakerTransitioned):
        opened = e.opened_at if e.to_state in (OPEN, HALF_OPEN) else None
        return BreakerState(state=e.to_state, failure_count=e.failure_count, opened_at=opened,
                            last_failure_at=e.last_failure_at or s.last_failure_at,
                            last_job_id=e.job_id or s.last_job_id, updated_at=e.at)
    if isinstance(e, BreakerFailureCounted):
        return msgspec.structs.replace(s, failure_count=e.failure_count,
                                       last_failure_at=e.last_failure_at or s.last_failure_at,
                                       last_job_id=e.job_id or s.last_job_id, updated_at=e.at)
    if isinstance(e, BreakerProbeEnqueued):
        return msgspec.structs.replace(s, last_job_id=e.job_id, updated_at=e.at)
    return s
