"""Every event Ductile records, as one tagged union of frozen msgspec Structs.

Events are past-tense facts. Each is tagged by its class name; the tag is also the ``type``
column of the log. Adding a field needs a default; changing a meaning needs a new schema number
(``SCHEMAS``) and an upcaster (``ductile.events.codec``). Instants are Unix nanoseconds (UTC).

Streams: ``job-<uuid>``, ``dedupe``, ``plugin-<name>``, ``breaker-<plugin>/<command>``,
``schedule-<plugin>/<id>``, ``system``.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Statuses and outcomes decode as their StrEnum; each encodes as its string, so the bytes in the
# log are what plain ``str`` fields wrote (tests/integration/test_release_upgrade.py replays them).
from ductile.vocabulary import AttemptOutcome, CircuitState, DeadOutcome, DedupeReason, JobStatus


class EventBase(msgspec.Struct, frozen=True, gc=False, tag=True, kw_only=True):
    at: int


# Job events after JobEnqueued repeat the job's identity (plugin, command, submitted_by,
# schedule_id) so that any event read on its own, e.g. an SSE replay from a log position,
# describes its job completely.


# --- job streams -------------------------------------------------------------------------------


class JobEnqueued(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    plugin: str
    command: str
    payload: dict[str, Any]
    submitted_by: str
    max_attempts: int
    dedupe_key: str | None = None
    parent_job_id: str | None = None
    source_event_id: str | None = None
    event_context_id: str | None = None
    schedule_id: str | None = None
    pipeline: str | None = None
    step_id: str | None = None
    config_snapshot_id: str | None = None
    direct: bool = False


class JobDeduped(EventBase, frozen=True, gc=False, kw_only=True):
    plugin: str
    command: str
    submitted_by: str
    dedupe_key: str
    dedupe_reason: DedupeReason
    existing_job_id: str
    # A routed dispatch that was dropped: the emitting job and where the event was going, so
    # that ``job inspect`` lists the drop under that job's dispatches.
    parent_job_id: str | None = None
    pipeline: str | None = None
    step_id: str | None = None
    event_type: str | None = None


class JobStarted(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    attempt: int
    config_snapshot_id: str | None = None
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None
    max_attempts: int = 0
    parent_job_id: str | None = None


class StopwatchSub(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One named span of a plugin's own timing breakdown (``ductile_stopwatch_subs``, plugins.md §6)."""

    name: str
    dur_ns: int
    status: str | None = None
    bytes: int | None = None
    count: int | None = None


class JobSucceeded(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    attempt: int
    result: str
    exit_code: int | None = None
    duration_ms: int = 0
    stderr: str = ""
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None
    subs: list[StopwatchSub] = []  # the attempt's timing breakdown, as the plugin reported it


class JobRetryScheduled(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    attempt: int
    outcome: AttemptOutcome
    error: str
    reason: str
    next_retry_at: int
    backoff_ms: int
    exit_code: int | None = None
    duration_ms: int = 0
    stderr: str = ""
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None
    max_attempts: int = 0
    plugin_retry: bool = True
    backoff_base_ms: int = 0
    subs: list[StopwatchSub] = []  # the attempt's timing breakdown, as the plugin reported it


class JobFailed(EventBase, frozen=True, gc=False, kw_only=True):
    """A terminal failure of the last attempt: ``status`` is ``failed`` or ``timed_out``."""

    job_id: str
    attempt: int
    status: JobStatus
    outcome: AttemptOutcome
    error: str
    reason: str
    exhausted: bool = False
    exit_code: int | None = None
    duration_ms: int = 0
    stderr: str = ""
    result: str | None = None
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None
    max_attempts: int = 0
    plugin_retry: bool = True
    subs: list[StopwatchSub] = []  # the attempt's timing breakdown, as the plugin reported it


class JobRecovered(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    attempt: int
    error: str
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None
    max_attempts: int = 0


class JobDead(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    attempt: int
    from_status: JobStatus
    reason: str
    error: str
    outcome: DeadOutcome | None = None  # how a running attempt ended; None if none ran
    recovery: bool = False
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None


class JobSkipped(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    reason: str
    attempt: int = 1
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None


class JobDispatchFailed(EventBase, frozen=True, gc=False, kw_only=True):
    """jobs.md T12: a routed child created directly as ``failed`` (a pipeline dispatch error);
    appended right after its ``JobEnqueued``, it is never claimed, spawned or retried."""

    job_id: str
    error: str
    plugin: str = ""
    command: str = ""
    submitted_by: str = ""
    schedule_id: str | None = None


# --- pipelines ---------------------------------------------------------------------------------


class ContextCreated(EventBase, frozen=True, gc=False, kw_only=True):
    """A durable context record (baggage) for one routed job; never updated or deleted."""

    context_id: str
    parent_id: str | None
    pipeline: str
    step_id: str
    claims: dict[str, Any]
    context: dict[str, Any]  # accumulated baggage, with Ductile's own ``ductile`` namespace
    hops: int = 0
    hook_depth: int = 0


class PipelineTriggered(EventBase, frozen=True, gc=False, kw_only=True):
    """``POST /pipeline/{name}`` enqueued the entry jobs of one new instance."""

    pipeline: str
    job_ids: list[str]
    submitted_by: str = "api"


class RouteDepthExceeded(EventBase, frozen=True, gc=False, kw_only=True):
    job_id: str
    pipeline: str
    step_id: str
    route_depth: int
    route_max_depth: int
    reason: str | None = None


# --- plugin state ------------------------------------------------------------------------------


class PluginStateChanged(EventBase, frozen=True, gc=False, kw_only=True):
    plugin: str
    state: dict[str, Any]
    job_id: str | None = None


class PluginFactAppended(EventBase, frozen=True, gc=False, kw_only=True):
    plugin: str
    seq: int
    fact_type: str
    fact: dict[str, Any]
    job_id: str
    command: str


# --- schedules and breakers --------------------------------------------------------------------


class SchedulePlanned(EventBase, frozen=True, gc=False, kw_only=True):
    """An entry (re)planned: first sighting, a changed spec, or a phase kept after downtime.

    Sets the entry ``active``.
    """

    plugin: str
    schedule_id: str
    plan_key: str
    command: str
    mode: str
    timezone: str
    next_slot_at: int
    next_run_at: int
    first_seen_at: int
    reason: str
    clear_success: bool = False


class ScheduleFired(EventBase, frozen=True, gc=False, kw_only=True):
    plugin: str
    schedule_id: str
    command: str
    slot: int
    job_id: str
    next_slot_at: int | None = None
    next_run_at: int | None = None
    catch_up: bool = False
    exhausted: bool = False


class ScheduleSkipped(EventBase, frozen=True, gc=False, kw_only=True):
    """An occurrence not enqueued; a new plan when the occurrence is dropped (else ``None``)."""

    plugin: str
    schedule_id: str
    command: str
    reason: str
    slot: int | None = None
    next_slot_at: int | None = None
    next_run_at: int | None = None
    catch_up: bool = False
    missed: int | None = None


class ScheduleStatusChanged(EventBase, frozen=True, gc=False, kw_only=True):
    plugin: str
    schedule_id: str
    from_status: str | None
    status: str
    reason: str | None = None
    detail: str | None = None
    command: str = "poll"
    mode: str = "unknown"
    timezone: str = "UTC"


class BreakerTransitioned(EventBase, frozen=True, gc=False, kw_only=True):
    plugin: str
    command: str
    from_state: CircuitState | None
    to_state: CircuitState
    failure_count: int
    reason: str
    job_id: str | None = None
    opened_at: int | None = None
    last_failure_at: int | None = None


class BreakerFailureCounted(EventBase, frozen=True, gc=False, kw_only=True):
    """The failure count changed without a state change (a failure below threshold, or a reset
    to 0 by a success while closed)."""

    plugin: str
    command: str
    failure_count: int
    job_id: str | None = None
    last_failure_at: int | None = None


class BreakerProbeEnqueued(EventBase, frozen=True, gc=False, kw_only=True):
    """A half-open breaker whose probe ended without deciding it (a cancelled probe) lets another
    occurrence through as its probe: not a state change, so no transition is recorded."""

    plugin: str
    command: str
    job_id: str


# --- system ------------------------------------------------------------------------------------


class GatewayStarted(EventBase, frozen=True, gc=False, kw_only=True):
    version: str
    pid: int
    posture: str = "closed"


class GatewayStopped(EventBase, frozen=True, gc=False, kw_only=True):
    pid: int


class ConfigSnapshotted(EventBase, frozen=True, gc=False, kw_only=True):
    snapshot_id: str
    reason: str
    config: dict[str, Any]


class ProjectionsPruned(EventBase, frozen=True, gc=False, kw_only=True):
    """Retention cut-offs (ns) per read model; projections delete older rows when they apply it."""

    before: dict[str, int]


Event = (
    JobEnqueued
    | JobDeduped
    | JobStarted
    | JobSucceeded
    | JobRetryScheduled
    | JobFailed
    | JobRecovered
    | JobDead
    | JobSkipped
    | JobDispatchFailed
    | ContextCreated
    | PipelineTriggered
    | RouteDepthExceeded
    | PluginStateChanged
    | PluginFactAppended
    | SchedulePlanned
    | ScheduleFired
    | ScheduleSkipped
    | ScheduleStatusChanged
    | BreakerTransitioned
    | BreakerFailureCounted
    | BreakerProbeEnqueued
    | GatewayStarted
    | GatewayStopped
    | ConfigSnapshotted
    | ProjectionsPruned
)

EVENT_TYPES: dict[str, type[EventBase]] = {cls.__name__: cls for cls in Event.__args__}  # type: ignore[attr-defined]

# Current schema number per type; bump together with an upcaster in ``codec.UPCASTERS``.
SCHEMAS: dict[str, int] = dict.fromkeys(EVENT_TYPES, 1)

JOB_EVENTS = (
    JobEnqueued,
    JobStarted,
    JobSucceeded,
    JobRetryScheduled,
    JobFailed,
    JobRecovered,
    JobDead,
    JobSkipped,
    JobDispatchFailed,
)


def job_stream(job_id: str) -> str:
    return f"job-{job_id}"


def plugin_stream(plugin: str) -> str:
    return f"plugin-{plugin}"


def breaker_stream(plugin: str, command: str) -> str:
    return f"breaker-{plugin}/{command}"


def context_stream(context_id: str) -> str:
    return f"context-{context_id}"


def schedule_stream(plugin: str, schedule_id: str) -> str:
    return f"schedule-{plugin}/{schedule_id}"
