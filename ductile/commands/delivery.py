"""Secrets at spawn (vault.md §10, plugins.md §7): the pure composition decision.

Before every spawn (each attempt) the dispatcher asks ``compose`` what the plugin gets: a
``secrets`` map plus the audit facts to commit before the spawn, or a fail-closed refusal (the job
ends ``failed``, no retry) with the spec's text and its audit fact. The vault document is read
fresh for each spawn, so a roll reaches the next job without a reload.

The fingerprint check reads the plugin's files, so it is an input: ``attest`` is called only when
the principal is registered and active, and answers None (attested) or the mismatch's detail.

``redact`` hides delivered values in what the plugin wrote back (stderr, ``logs[]``, ``error``,
``result``) before anything stores, logs or publishes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from ductile.events.types import (
    DeliveryRefused,
    EventBase,
    FingerprintMismatch,
    SecretDenied,
    SecretsDelivered,
)
from ductile.vault.document import ADMIN_TOKEN, VaultDocument
from ductile.vocabulary import (
    CompositionDenialReason,
    PermanentReason,
    PrincipalStatus,
    SecretDenialReason,
    SecretStatus,
)

NO_VAULT = "vault: plugin requires vault secrets but no vault is loaded"
PRINCIPAL_NOT_REGISTERED = 'vault: plugin requires vault secrets but its principal "{principal}" is not registered'
PRINCIPAL_NOT_ACTIVE = 'vault: principal "{principal}" is not active'
FINGERPRINT_MISMATCH = "fingerprint_mismatch: {detail}"
REDACTED = "[REDACTED:{name}]"
REDACT_MIN_BYTES = 8  # shorter values are too likely to match ordinary text to be worth hiding


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """Run the plugin with ``secrets`` (possibly empty); ``facts`` are committed before the spawn."""

    secrets: dict[str, str] = {}
    facts: list[EventBase] = []

    # The map holds values: only its names may reach a log line, rich, or a test runner's output.
    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        yield "secrets", sorted(self.secrets)
        yield "facts", self.facts

    def __repr__(self) -> str:
        return f"Delivery(secrets={sorted(self.secrets)!r}, facts={self.facts!r})"

    __str__ = __repr__


class DeliveryRefusal(msgspec.Struct, frozen=True, kw_only=True):
    """Fail the job closed: ``error`` is the job's error text, ``reason`` its permanent reason."""

    reason: PermanentReason
    error: str
    facts: list[EventBase]
    mismatch_detail: str | None = None  # set for a fingerprint mismatch: the SSE event and the WARN log


NOTHING = Delivery()


def principal_of(plugin: str, vault_principal: str | None) -> str:
    """``plugins.<n>.vault_principal`` or the entry name (vault.md §10)."""
    return vault_principal or plugin


def compose(
    doc: VaultDocument | None,
    *,
    plugin: str,
    principal: str,
    requires_vault: bool,
    job_id: str,
    now: int,
    attest: Callable[[VaultDocument], str | None],
) -> Delivery | DeliveryRefusal:
    """vault.md §10's table, row by row (``now`` stamps the facts). A plugin the vault does not know and that does not
    require it costs two lookups and produces nothing (the common case stays free)."""
    if doc is None:
        if requires_vault:
            return _denied(principal, CompositionDenialReason.NO_VAULT, NO_VAULT, job_id, now)
        return NOTHING
    registered = doc.principals.get(principal)
    if registered is None:
        if requires_vault:
            return _denied(principal, CompositionDenialReason.PRINCIPAL_NOT_REGISTERED,
                           PRINCIPAL_NOT_REGISTERED.format(principal=principal), job_id, now)
        return NOTHING
    if registered.status != PrincipalStatus.ACTIVE:
        return _denied(principal, CompositionDenialReason.PRINCIPAL_NOT_ACTIVE,
                       PRINCIPAL_NOT_ACTIVE.format(principal=principal), job_id, now)
    detail = attest(doc)
    if detail is not None:
        fact = FingerprintMismatch(at=now, principal=principal, plugin=plugin, job_id=job_id, detail=detail)
        return DeliveryRefusal(reason=PermanentReason.FINGERPRINT_MISMATCH,
                               error=FINGERPRINT_MISMATCH.format(detail=detail), facts=[fact], mismatch_detail=detail)
    secrets: dict[str, str] = {}
    facts: list[EventBase] = []
    for name in sorted(doc.secrets):
        secret = doc.secrets[name]
        if name == ADMIN_TOKEN or principal not in secret.authorized_principals:
            continue  # the admin token is never delivered, whatever a hand-edited vault grants
        if secret.status != SecretStatus.ACTIVE:
            facts.append(SecretDenied(at=now, principal=principal, name=name, reason=SecretDenialReason.SECRET_REVOKED, job_id=job_id))
        elif not secret.value:
            facts.append(SecretDenied(at=now, principal=principal, name=name, reason=SecretDenialReason.SECRET_NO_VALUE, job_id=job_id))
        else:
            secrets[name] = secret.value
    if secrets:
        facts.insert(0, SecretsDelivered(at=now, principal=principal, names=list(secrets), job_id=job_id))
    return Delivery(secrets=secrets, facts=facts)


def _denied(principal: str, reason: CompositionDenialReason, error: str, job_id: str, now: int) -> DeliveryRefusal:
    return DeliveryRefusal(reason=PermanentReason.SECRETS_DENIED, error=error,
                           facts=[DeliveryRefused(at=now, principal=principal, reason=reason, job_id=job_id)])


class Redactor:
    """Replaces every delivered value of ≥ 8 bytes by ``[REDACTED:<name>]``. Each value is also
    matched in its JSON-escaped form, as it appears inside the raw stdout the job stores."""

    __slots__ = ("_pairs",)

    def __init__(self, secrets: Mapping[str, str]) -> None:
        pairs: list[tuple[str, str]] = []
        for name, value in secrets.items():
            if len(value.encode()) < REDACT_MIN_BYTES:
                continue
            mark = REDACTED.format(name=name)
            escaped = msgspec.json.encode(value).decode()[1:-1]
            pairs.append((value, mark))
            if escaped != value:
                pairs.append((escaped, mark))
        # Longest first: a value that contains another is replaced whole.
        self._pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __repr__(self) -> str:
        return f"Redactor({len(self._pairs)} pattern(s))"

    def __call__(self, text: str) -> str:
        for value, mark in self._pairs:
            if value in text:
                text = text.replace(value, mark)
        return text
