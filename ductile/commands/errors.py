"""Domain errors a decider raises when it refuses a command."""

from __future__ import annotations

from enum import StrEnum

from ductile.vault.document import MAX_VALUE_BYTES


class Refused(Exception):
    """Base of every refusal; ``str(e)`` is safe to show a user."""


class InvalidTransition(Refused):
    def __init__(self, what: str, status: str | None) -> None:
        super().__init__(f"{what} is not allowed for a job in state {status or 'none'}")
        self.what = what
        self.status = status


class JobNotFound(Refused):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job not found: {job_id}")
        self.job_id = job_id


class AlreadyExists(Refused):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job already exists: {job_id}")
        self.job_id = job_id


class PipelineInputRefused(Refused):
    """A pipeline trigger whose payload the entry step's baggage claims cannot accept."""

    def __init__(self, pipeline: str, reason: str) -> None:
        super().__init__(reason)
        self.pipeline = pipeline


class PayloadTooLarge(Refused):
    """A pipeline trigger whose entry context would exceed the context cap."""

    def __init__(self, pipeline: str, size: int, limit: int) -> None:
        super().__init__("pipeline baggage exceeds maximum context size")
        self.pipeline = pipeline
        self.size = size
        self.limit = limit


class VaultRefusal(StrEnum):
    """The refusals of vault.md §5, byte for byte. None quotes a value, not even a rejected one."""

    INVALID_NAME = "vault: invalid name"
    INVALID_KIND = "vault: invalid principal kind"
    INVALID_PATTERN = "vault: invalid secret pattern"
    RESERVED = "vault: reserved entity cannot be mutated via the data plane"
    UNKNOWN_PRINCIPAL = "vault: unknown principal"
    UNKNOWN_SECRET = "vault: unknown secret"
    EMPTY_VALUE = "vault: active secret value must not be empty"
    AUTO_WITH_VALUE = "vault: auto secrets are minted by the daemon; omit the value"
    REVOKED = "vault: secret is revoked"
    IMMUTABLE = "vault: secret value is immutable via set; use roll"
    TOO_LARGE = f"vault: secret value exceeds {MAX_VALUE_BYTES} bytes"
    PRINCIPAL_EXISTS = "vault: principal already registered"


class VaultRefused(Refused):
    """A vault command refused by the decider; ``str(e)`` is the spec's text (the API's 400 body)."""

    def __init__(self, refusal: VaultRefusal | str) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class VaultExists(Refused):
    """``vault init`` over an existing vault (vault.md §6)."""

    def __init__(self, vault_path: str) -> None:
        super().__init__(f'vault: refusing to init — "{vault_path}" already exists')
        self.vault_path = vault_path
