"""The words the event log, the read models and the API share: job statuses, attempt outcomes,
retry reasons and breaker states (jobs.md §5, §7, §9).

One home for each (ARCHITECTURE.md §2, "one home per policy"). This module imports nothing of
Ductile, so ``events`` may import it too. Every name is a ``StrEnum``: a member *is* its string,
so it compares equal to the text read back from SQL or JSON, encodes byte-identically in msgpack
and JSON, and formats as its value in f-strings and log fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobStatus(StrEnum):
    """A job's place in its state machine. Declaration order is the order the API lists them in."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    DEAD = "dead"
    SKIPPED = "skipped"


# A terminal job never changes again; an outstanding one still may (jobs.md §5).
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.DEAD, JobStatus.SKIPPED}
)
OUTSTANDING: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
# The terminal statuses that count as a failure (the breaker's count, a pipeline's summary).
FAILURES: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.DEAD})


def in_order(statuses: Iterable[JobStatus]) -> tuple[JobStatus, ...]:
    """The statuses in declaration order: a set's own order changes with the hash seed, and JSON
    objects and SQL built from it should not."""
    wanted = set(statuses)
    return tuple(s for s in JobStatus if s in wanted)


def sql_in(statuses: Iterable[JobStatus]) -> str:
    """An SQL ``IN`` list of the statuses, e.g. ``('queued','running')``. The values are this
    module's constants, never input, so inlining them is safe."""
    return "(" + ",".join(f"'{s}'" for s in in_order(statuses)) + ")"


TERMINAL_SQL = sql_in(TERMINAL)
OUTSTANDING_SQL = sql_in(OUTSTANDING)


class AttemptOutcome(StrEnum):
    """How one attempt ended, as the runner observed it (``job_attempts.outcome``)."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    SPAWN_ERROR = "spawn_error"


class DeadOutcome(StrEnum):
    """Why a running job was ended from outside its own answer (``JobDead.outcome``)."""

    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class RetryReason(StrEnum):
    """The retry decision's reason for a failed attempt (jobs.md §7). A permanent failure the runner
    classified carries its own reason instead (``AttemptResult.permanent_reason``)."""

    PLUGIN_ERROR = "plugin_error"
    TIMEOUT = "timeout"
    SPAWN_ERROR = "spawn_error"
    EXIT_CODE_78 = "exit_code_78"
    PLUGIN_RETRY_FALSE = "plugin_retry_false"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    CRASH_RECOVERY_EXHAUSTED = "crash_recovery_exhausted"


class PermanentReason(StrEnum):
    """Why the gateway failed an attempt for good, whatever the plugin asked
    (``AttemptResult.permanent_reason``; it becomes the ``JobFailed.reason``)."""

    PREFLIGHT_ERROR = "preflight_error"  # a switch, a template or the step itself could not be prepared
    INVALID_EVENT = "invalid_event"  # the stored event for ``handle`` is not an event
    WITH_ERROR = "with_error"  # the step's ``with:`` template failed
    INVALID_RESPONSE = "invalid_response"  # an ``ok`` answer that cannot be applied
    ROUTE_ERROR = "route_error"  # an ``ok`` answer whose events cannot be routed
    STATE_ERROR = "state_error"  # the plugin's state updates break its manifest's rules
    INTERNAL_ERROR = "internal_error"  # a fault of the gateway's own while recording the result
    SECRETS_DENIED = "secrets_denied"  # the plugin's secrets could not be composed (vault.md §10)
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"  # its bytes do not match `plugin lock` (vault.md §9)


class DedupeReason(StrEnum):
    """Why an enqueue was answered with an existing job (``JobDeduped.dedupe_reason``)."""

    OUTSTANDING = "outstanding"
    RECENT_SUCCESS = "recent_success"


class CircuitState(StrEnum):
    """A circuit breaker's position (jobs.md §9)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ScheduleStatus(StrEnum):
    """A schedule entry's stored status (``schedule_state.status``; scheduler.md)."""

    ACTIVE = "active"
    PAUSED_INVALID = "paused_invalid"
    EXHAUSTED = "exhausted"


class SecretStatus(StrEnum):
    """A vault secret's state (vault.md §2): a revoked secret has no value and its name is final."""

    ACTIVE = "active"
    REVOKED = "revoked"


class SecretPattern(StrEnum):
    """Who supplies a secret's values (vault.md §2): the operator, or the daemon minting them."""

    MANUAL = "manual"
    AUTO = "auto"


class PrincipalKind(StrEnum):
    """What a vault principal is (vault.md §2): a plugin receives its grants at spawn; a consumer
    or the gateway makes a secret visible to the gateway's own ``secret_ref``s."""

    PLUGIN = "plugin"
    CONSUMER = "consumer"
    GATEWAY = "gateway"


class PrincipalStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class VaultActor(StrEnum):
    """Who made a vault change or caused an audit fact (vault.md §12, the ``actor`` column)."""

    CLI = "cli"  # a local command run by the operator (init, import, rotate-key, get, offline set)
    ADMIN_TOKEN = "core-admin-token"  # a `/vault/*` API client holding the admin token
    CORE = "core"  # the gateway itself (delivery, boot adoption, an aborted write)
    UNKNOWN = "unknown"  # an unauthenticated caller


class AuditOp(StrEnum):
    """The ``op`` of a vault audit record (vault.md §12)."""

    INIT = "init"
    REGISTER = "register"
    SET = "set"
    ROLL = "roll"
    REVOKE = "revoke"
    REVOKE_PRINCIPAL = "revoke_principal"
    PURGE_PRINCIPAL = "purge_principal"
    ROLL_PRINCIPAL = "roll_principal"
    ROTATE_ADMIN_TOKEN = "rotate-admin-token"
    ROTATE_KEY = "rotate-key"
    IMPORT = "import"
    ADOPT = "adopt"
    ABORT = "abort"
    READ = "read"
    DELIVER = "deliver"
    DENY = "deny"
    COMPOSE_DENIAL = "compose_denial"
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    AUTH_FAILED = "auth_failed"


class AuditOutcome(StrEnum):
    """The ``outcome`` of a vault audit record (vault.md §12)."""

    OK = "ok"
    FAILED = "failed"
    DENIED = "denied"
    ABORTED = "aborted"
    SECURITY_ALERT = "security_alert"


class SecretDenialReason(StrEnum):
    """Why one granted secret was left out of a plugin's ``secrets`` map (vault.md §10, ``deny``)."""

    SECRET_REVOKED = "secret_revoked"
    SECRET_NO_VALUE = "secret_no_value"


class CompositionDenialReason(StrEnum):
    """Why a spawn's ``secrets`` map could not be composed at all (vault.md §10, ``compose_denial``)."""

    NO_VAULT = "no_vault"  # requires_vault, and no vault is loaded
    PRINCIPAL_NOT_REGISTERED = "principal_not_registered"  # requires_vault, and the principal is unknown
    PRINCIPAL_NOT_ACTIVE = "principal_not_active"  # the principal is revoked


class VaultAgreement(StrEnum):
    """The on-disk blob against the log (vault.md §3; ``vault status``'s ``agreement``)."""

    AGREE = "agree"
    UNLANDED_WRITE = "unlanded_write"  # the blob is the last change's prev_blob_sha256: revert it
    NOT_ADOPTED = "not_adopted"  # a blob but no vault event yet: adopt it (first boot after init)
    MISMATCH = "mismatch"  # boot refuses
