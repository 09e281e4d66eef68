"""Every event Ductile records, as one tagged union of frozen msgspec Structs.

Events are past-tense facts. Each is tagged by its class name; the tag is also the ``type``
column of the log. Adding a field needs a default; changing a meaning needs a new schema number
(``SCHEMAS``) and an upcaster (``ductile.events.codec``). Instants are Unix nanoseconds (UTC).

Streams: ``job-<uuid>``, ``dedupe``, ``plugin-<name>``, ``breaker-<plugin>/<command>``,
``schedule-<plugin>/<id>``, ``webhook-<path>``, ``system``, ``vault`` (every change of the vault) and ``vault-audit``
(the audit-only facts: reads, deliveries, denials).
"""

from __future__ import annotations

from typing import Any

import msgspec

# Statuses and outcomes decode as their StrEnum; each encodes as its string, so the bytes in the
# log are what plain ``str`` fields wrote (tests/integration/test_release_upgrade.py replays them).
from ductile.vocabulary import (
    AttemptOutcome,
    AuditOutcome,
    CircuitState,
    DeadOutcome,
    DedupeReason,
    JobStatus,
    PrincipalKind,
    PrincipalStatus,
    SecretDenialReason,
    SecretPattern,
    SecretStatus,
    VaultActor,
)


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
    # The gateway node running the attempt (schema 2, docs/postgresql.md "Several nodes"): on a
    # shared PostgreSQL store, boot recovers only its own node's jobs and a dead node's jobs are
    # re-queued by a live one. None on SQLite's one node, and in every schema-1 event.
    node: str | None = None


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


class ConfigReloaded(EventBase, frozen=True, gc=False, kw_only=True):
    """A reload swapped in the config of snapshot ``snapshot_id`` (config.md §8). The hash is of the
    redacted snapshot, so two reloads of the same config are recognisable; never a value."""

    snapshot_id: str
    snapshot_hash: str


class ConfigReloadRejected(EventBase, frozen=True, gc=False, kw_only=True):
    """A reload refused; the running config stays. ``error`` is the ``config reload rejected: ...`` text."""

    error: str


class ProjectionsPruned(EventBase, frozen=True, gc=False, kw_only=True):
    """Retention cut-offs (ns) per read model; projections delete older rows when they apply it."""

    before: dict[str, int]


# --- vault -------------------------------------------------------------------------------------
# vault.md §3: every change of the vault appends one event carrying names, grants, pattern, status,
# roll_count and the actor, and the sha256 of the blob written with it; NEVER a value (not even a
# hash of one: a value may be guessable). tests/unit/events/test_vault_events.py pins that no
# field could hold one.


class SecretMeta(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A secret as the log and the projection know it: ``vault.document.Secret`` without its value.
    Timestamps are the document's (UTC RFC3339, whole seconds)."""

    status: SecretStatus = SecretStatus.ACTIVE
    pattern: SecretPattern = SecretPattern.MANUAL
    roll_count: int = 0
    grants: list[str] = []  # authorized_principals, in the document's order
    created_at: str = ""
    updated_at: str = ""
    revoked_at: str = ""
    description: str = ""


class PrincipalMeta(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A principal without its nonce (only ``core`` has one, and it is key material)."""

    kind: PrincipalKind
    status: PrincipalStatus = PrincipalStatus.ACTIVE


class VaultMeta(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The whole vault's metadata, by name: what a snapshot event carries."""

    secrets: dict[str, SecretMeta] = {}
    principals: dict[str, PrincipalMeta] = {}


class VaultChange(EventBase, frozen=True, gc=False, kw_only=True):
    """Base of the events that go with a blob write. The decider returns them with empty hashes;
    the use case stamps them (``commands.vault.stamp``) once the new blob is encrypted, before it
    commits the event and writes the file (vault.md §3 order)."""

    actor: VaultActor
    blob_sha256: str = ""  # hex sha256 of the vault.age written with this change
    prev_blob_sha256: str = ""  # the blob it replaced: the boot check's "unlanded write" marker


class VaultInitialized(VaultChange, frozen=True, gc=False, kw_only=True):
    """``vault init``: principal ``core`` (with the nonce) and the secret ``core-admin-token``."""


class PrincipalRegistered(VaultChange, frozen=True, gc=False, kw_only=True):
    name: str
    kind: PrincipalKind


class PrincipalRevoked(VaultChange, frozen=True, gc=False, kw_only=True):
    name: str


class PrincipalPurged(VaultChange, frozen=True, gc=False, kw_only=True):
    name: str
    grants_removed: list[str] = []  # the secrets whose grants lost the name, in one step


class PrincipalRolled(VaultChange, frozen=True, gc=False, kw_only=True):
    """Every active auto secret granted to ``name`` rolled at once; the manual ones listed."""

    name: str
    rolled: list[str] = []
    skipped: list[str] = []


class SecretSet(VaultChange, frozen=True, gc=False, kw_only=True):
    """A secret created or updated by ``set``: its pattern and grants as they are now."""

    name: str
    created: bool
    pattern: SecretPattern
    grants: list[str] = []


class SecretRolled(VaultChange, frozen=True, gc=False, kw_only=True):
    name: str
    roll_count: int  # after this roll


class SecretRevoked(VaultChange, frozen=True, gc=False, kw_only=True):
    name: str


class AdminTokenRotated(VaultChange, frozen=True, gc=False, kw_only=True):
    roll_count: int  # of core-admin-token, after this rotation


class VaultImported(VaultChange, frozen=True, gc=False, kw_only=True):
    """Legacy tokens imported as manual secrets with no grants (names already present with the
    same value are not listed: nothing changed for them)."""

    names: list[str]


class VaultReencrypted(VaultChange, frozen=True, gc=False, kw_only=True):
    """A ``rotate-key`` blob write that changes no metadata (the bridge, a restore, the final
    write); audited once, by the ``VaultKeyRotated`` that ends the rotation."""

    step: str


class VaultKeyRotated(VaultChange, frozen=True, gc=False, kw_only=True):
    """The end of a ``rotate-key`` run: ok (``recipient`` is the new public key) or failed at
    ``step`` with ``error`` (texts about files and keys, never a value)."""

    outcome: AuditOutcome
    recipient: str = ""
    step: str = ""
    error: str = ""


class VaultAdopted(VaultChange, frozen=True, gc=False, kw_only=True):
    """The on-disk blob accepted as truth: at first boot after ``vault init`` (``initial``) or by
    ``vault adopt``. ``meta`` is the blob's metadata, so the projection follows the blob; the diff
    against what the log knew is names only."""

    initial: bool
    meta: VaultMeta
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []


class VaultWriteAborted(VaultChange, frozen=True, gc=False, kw_only=True):
    """The last change's blob never landed: the metadata goes back to the blob on disk (``meta``),
    whose hash is this event's ``blob_sha256``."""

    aborted: str  # the event type of the change that did not land
    meta: VaultMeta


# Audit-only facts (vault.md §12): they change nothing in the vault.


class SecretRead(EventBase, frozen=True, gc=False, kw_only=True):
    """``vault get``: committed before the value is printed."""

    name: str
    outcome: AuditOutcome
    actor: VaultActor = VaultActor.CLI


class SecretsDelivered(EventBase, frozen=True, gc=False, kw_only=True):
    """One spawn's ``secrets`` map: the names only."""

    principal: str
    names: list[str]
    job_id: str


class SecretDenied(EventBase, frozen=True, gc=False, kw_only=True):
    """A granted secret left out of a spawn (revoked, or no value); the job still runs."""

    principal: str
    name: str
    reason: SecretDenialReason
    job_id: str


class DeliveryRefused(EventBase, frozen=True, gc=False, kw_only=True):
    """A spawn failed closed while composing its secrets (vault.md §10)."""

    principal: str
    reason: str
    job_id: str


class FingerprintMismatch(EventBase, frozen=True, gc=False, kw_only=True):
    """A plugin whose principal is active ran with no fingerprint or changed bytes."""

    principal: str
    plugin: str
    job_id: str
    detail: str


class VaultAuthFailed(EventBase, frozen=True, gc=False, kw_only=True):
    """A 401 on ``/vault/*`` (at most one per remote address per minute, the caller's limit)."""

    path: str
    remote: str


# --- webhooks ----------------------------------------------------------------------------------


class WebhookAccepted(EventBase, frozen=True, gc=False, kw_only=True):
    """A timestamped webhook delivery was accepted (webhooks.md §3): appended with its job, so the
    replay guard survives a restart. ``signature_key`` is a digest of the MAC, never the signature
    itself; ``expires_at`` (ns) ends the replay window, after which the timestamp check refuses."""

    endpoint: str  # the endpoint's path
    signature_key: str
    job_id: str
    expires_at: int


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
    | ConfigReloaded
    | ConfigReloadRejected
    | ProjectionsPruned
    | VaultInitialized
    | PrincipalRegistered
    | PrincipalRevoked
    | PrincipalPurged
    | PrincipalRolled
    | SecretSet
    | SecretRolled
    | SecretRevoked
    | AdminTokenRotated
    | VaultImported
    | VaultReencrypted
    | VaultKeyRotated
    | VaultAdopted
    | VaultWriteAborted
    | SecretRead
    | SecretsDelivered
    | SecretDenied
    | DeliveryRefused
    | FingerprintMismatch
    | VaultAuthFailed
    | WebhookAccepted
)

EVENT_TYPES: dict[str, type[EventBase]] = {cls.__name__: cls for cls in Event.__args__}  # type: ignore[attr-defined]

# Current schema number per type; bump together with an upcaster in ``codec.UPCASTERS``.
SCHEMAS: dict[str, int] = dict.fromkeys(EVENT_TYPES, 1)
SCHEMAS["JobStarted"] = 2  # 2: ``node`` (the node running the attempt)

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


def webhook_stream(path: str) -> str:
    return f"webhook-{path}"


def plugin_stream(plugin: str) -> str:
    return f"plugin-{plugin}"


def breaker_stream(plugin: str, command: str) -> str:
    return f"breaker-{plugin}/{command}"


def context_stream(context_id: str) -> str:
    return f"context-{context_id}"


def schedule_stream(plugin: str, schedule_id: str) -> str:
    return f"schedule-{plugin}/{schedule_id}"


VAULT_STREAM = "vault"  # every VaultChange, in order: the boot check reads its last blob hash
VAULT_AUDIT_STREAM = "vault-audit"  # reads, deliveries and denials: kept apart so a delivery at
# every spawn never contends with a vault change for the ``vault`` stream's version

VAULT_CHANGES: tuple[type[VaultChange], ...] = tuple(
    cls for cls in EVENT_TYPES.values() if issubclass(cls, VaultChange)  # type: ignore[misc]
)
VAULT_AUDIT_FACTS = (SecretRead, SecretsDelivered, SecretDenied, DeliveryRefused, FingerprintMismatch,
                     VaultAuthFailed)
