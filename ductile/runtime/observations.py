"""Observation events: what the SSE stream shows for each logged event, and live-only frames.

``frames(record)`` is a pure function of one logged event, so the stream can be rebuilt from any
log position (resume after a disconnect or a restart gives the same frames). Live frames
(``scheduler.tick``, ``plugin.spawned``, ``job.preflight``) are never logged and never replayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from ductile.commands.jobs import nominal_schedule_ms
from ductile.events.record import Recorded
from ductile.events.timefmt import rfc3339
from ductile.events.types import (
    BreakerTransitioned,
    ConfigReloaded,
    ConfigReloadRejected,
    FingerprintMismatch,
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
    PipelineTriggered,
    RouteDepthExceeded,
    ScheduleFired,
    ScheduleSkipped,
    ScheduleStatusChanged,
)
from ductile.vocabulary import AttemptOutcome, CircuitState, JobStatus, RetryReason

Frame = tuple[str, dict[str, Any]]
NS_PER_MS = 1_000_000
LIVE_TYPES = frozenset({"scheduler.tick", "plugin.spawned", "job.preflight"})
LAST_INDEX = 1 << 30  # "every frame of this position": no event yields this many frames
_encoder = msgspec.json.Encoder()


class FrameId(msgspec.Struct, frozen=True, order=True, gc=False):
    """An SSE id: ``position`` (``index`` 0) or ``position.index`` for an extra frame."""

    position: int
    index: int = 0

    def __str__(self) -> str:
        return str(self.position) if self.index == 0 else f"{self.position}.{self.index}"


class WireFrame(msgspec.Struct, frozen=True, gc=False):
    """A frame encoded once for the SSE wire and shared by every subscriber. ``id`` is None
    for live frames, which are never logged nor replayed."""

    id: FrameId | None
    type: str
    wire: bytes


def encode_frame(frame_id: FrameId | None, type_: str, payload: dict[str, Any]) -> WireFrame:
    head = f"id: {frame_id}\n" if frame_id is not None else ""
    wire = (head + f"event: {type_}\ndata: ").encode() + _encoder.encode(payload) + b"\n\n"
    return WireFrame(frame_id, type_, wire)



def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _poll(e: Any, at: str) -> bool:
    return bool(getattr(e, "schedule_id", None)) and e.command == "poll"


def frames(rec: Recorded) -> list[Frame]:
    e = rec.event
    at = rfc3339(e.at)
    match e:
        case JobEnqueued():
            out: list[Frame] = [("job.enqueued", _compact({
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "submitted_by": e.submitted_by,
                "direct": e.direct, "parent_job_id": e.parent_job_id, "dedupe_key": e.dedupe_key,
                "schedule_id": e.schedule_id,
            }))]
            if e.submitted_by == "route":
                out.append(("router.enqueued", {
                    "at": at, "job_id": e.job_id, "parent_job_id": e.parent_job_id, "plugin": e.plugin,
                    "command": e.command, "pipeline": e.pipeline, "step_id": e.step_id,
                    "event_context_id": e.event_context_id,
                }))
            return out
        case JobDispatchFailed():
            text = f"Job failed [{e.plugin}]: {e.error}"
            return [("job.failed", {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "status": JobStatus.FAILED,
                "attempt": 1, "duration_ms": 0, "error": e.error, "message": text, "text": text,
            })]
        case PipelineTriggered():
            return [("pipeline.enqueued", {
                "at": at, "job_id": e.job_ids[0], "job_ids": list(e.job_ids), "job_count": len(e.job_ids),
                "pipeline": e.pipeline, "submitted_by": e.submitted_by,
            })]
        case RouteDepthExceeded():
            return [("router.depth_exceeded", _compact({
                "at": at, "job_id": e.job_id, "pipeline": e.pipeline, "step_id": e.step_id, "route_depth": e.route_depth,
                "route_max_depth": e.route_max_depth, "reason": e.reason,
            }))]
        case JobDeduped():
            return [("job.deduped", {
                "at": at, "plugin": e.plugin, "command": e.command, "submitted_by": e.submitted_by,
                "dedupe_key": e.dedupe_key, "dedupe_reason": e.dedupe_reason, "existing_job_id": e.existing_job_id,
            })]
        case JobStarted():
            started = {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "attempt": e.attempt,
                "max_attempts": e.max_attempts, "parent_job_id": e.parent_job_id, "submitted_by": e.submitted_by,
            }
            if e.node is not None:  # several nodes on one PostgreSQL store: which one runs it
                started["node"] = e.node
            out = [("job.started", started)]
            if _poll(e, at):
                out.append(("poll.started", {
                    "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command,
                    "schedule_id": e.schedule_id, "submitted_by": e.submitted_by, "attempt": e.attempt,
                }))
            return out
        case JobSucceeded():
            out = [("job.completed", {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "status": JobStatus.SUCCEEDED,
                "attempt": e.attempt, "duration_ms": e.duration_ms,
            })]
            return out + _poll_completed(e, at, JobStatus.SUCCEEDED, AttemptOutcome.OK, None)
        case JobRetryScheduled():
            base = e.backoff_base_ms * NS_PER_MS
            out = [("job.retry_scheduled", {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "attempt": e.attempt,
                "max_attempts": e.max_attempts, "retry_count": e.attempt, "max_retries": max(0, e.max_attempts - 1),
                "retry_policy_owner": "core", "plugin_retry_field": e.plugin_retry, "backoff_ms": e.backoff_ms,
                "backoff_schedule": nominal_schedule_ms(base, e.max_attempts) if base else [],
                "next_retry_at": rfc3339(e.next_retry_at), "reason": e.reason,
            })]
            return out + _poll_completed(e, at, JobStatus.QUEUED, e.outcome, e.error)
        case JobFailed():
            kind = "job.timed_out" if e.status == JobStatus.TIMED_OUT else "job.failed"
            text = f"Job {'timed out' if e.status == JobStatus.TIMED_OUT else 'failed'} [{e.plugin}]: {e.error}"
            out = [
                ("job.retry_exhausted", _compact({
                    "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "attempts": e.attempt,
                    "final_error": e.error, "reason": RetryReason.ATTEMPTS_EXHAUSTED if e.exhausted else "non_retryable",
                    "retry_policy_owner": "core", "plugin_retry_field": e.plugin_retry,
                    "retry_decision_reason": None if e.exhausted else e.reason,
                })),
                (kind, {
                    "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "status": e.status,
                    "attempt": e.attempt, "duration_ms": e.duration_ms, "error": e.error, "message": text, "text": text,
                }),
            ]
            return out + _poll_completed(e, at, e.status, e.outcome, e.error)
        case JobRecovered():
            return [("job.recovered", {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "attempt": e.attempt,
                "max_attempts": e.max_attempts,
            })]
        case JobDead():
            text = f"Job failed [{e.plugin}]: {e.error}"
            return [("job.failed", _compact({
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "status": JobStatus.DEAD,
                "attempt": e.attempt, "duration_ms": 0, "error": e.error, "message": text, "text": text,
                "recovery": True if e.recovery else None,
            }))]
        case JobSkipped():
            return [("job.skipped", {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "reason": e.reason,
            })]
        case ScheduleFired():
            return [("scheduler.scheduled", {
                "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "schedule_id": e.schedule_id,
                "slot": rfc3339(e.slot), "catch_up": e.catch_up,
            })]
        case ScheduleSkipped():
            return [("scheduler.skipped", _compact({
                "at": at, "plugin": e.plugin, "command": e.command, "schedule_id": e.schedule_id, "reason": e.reason,
                "slot": rfc3339(e.slot), "catch_up": True if e.catch_up else None, "missed": e.missed,
            }))]
        case ScheduleStatusChanged():
            return [("scheduler.entry_status_changed", _compact({
                "at": at, "plugin": e.plugin, "schedule_id": e.schedule_id, "from_status": e.from_status,
                "to_status": e.status, "reason": e.reason,
            }))]
        case BreakerTransitioned():
            out = [("scheduler.circuit_state_changed", _compact({
                "at": at, "plugin": e.plugin, "command": e.command, "from_state": e.from_state, "to_state": e.to_state,
                "failure_count": e.failure_count, "reason": e.reason, "job_id": e.job_id,
            }))]
            if e.to_state == CircuitState.HALF_OPEN:
                out.append(("scheduler.circuit_half_open", {
                    "at": at, "plugin": e.plugin, "command": e.command, "opened_at": rfc3339(e.opened_at),
                }))
            return out
        case FingerprintMismatch():  # vault.md §10: a logged frame, so a resumed stream still shows it
            return [("plugin.fingerprint_mismatch", {"at": at, "plugin": e.plugin, "job_id": e.job_id,
                                                     "detail": e.detail})]
        case ConfigReloaded():  # api.md §5 (Ductile extension)
            return [("config.reloaded", {"at": at, "reloaded_at": at})]
        case ConfigReloadRejected():
            return [("config.reload_failed", {"at": at, "error": e.error})]
    return []


def _poll_completed(e: Any, at: str, status: str, outcome: str, error: str | None) -> list[Frame]:
    if not _poll(e, at):
        return []
    return [("poll.completed", _compact({
        "at": at, "job_id": e.job_id, "plugin": e.plugin, "command": e.command, "schedule_id": e.schedule_id,
        "submitted_by": e.submitted_by, "attempt": e.attempt, "status": status, "outcome": outcome,
        "duration_ms": e.duration_ms, "error": error,
    }))]


class LiveHub:
    """Fan-out of live-only frames to SSE subscribers; never blocks the publisher."""

    def __init__(self) -> None:
        self._subscribers: set[Callable[[Frame], None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, deliver: Callable[[Frame], None]) -> Callable[[], None]:
        self._subscribers.add(deliver)
        return lambda: self._subscribers.discard(deliver)

    @property
    def count(self) -> int:
        return len(self._subscribers)

    def publish(self, type_: str, payload: dict[str, Any]) -> None:
        """Thread-safe: worker threads publish ``plugin.spawned`` too."""
        if not self._subscribers:
            return
        frame = (type_, payload)
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fan_out(frame)
        else:
            loop.call_soon_threadsafe(self._fan_out, frame)

    def _fan_out(self, frame: Frame) -> None:
        for deliver in list(self._subscribers):
            deliver(frame)
