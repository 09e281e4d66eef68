"""Secrets at spawn, the dispatcher's side (vault.md §10): read the vault, compose, audit, redact.

The audit facts of a spawn are committed in their own small append on the ``vault-audit`` stream
right before the spawn, not in the claim's transaction: the claim happens in the previous job's
completion (one commit per turnover), before this job's vault document is read and before its
plugin's files are fingerprinted, and hashing files inside the single writer's transaction would
stall every other writer. A ``deliver`` record is thus durable before a value leaves the gateway.
A plugin the vault does not know, and that does not require it, appends nothing.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ductile.commands.delivery import Delivery, DeliveryRefusal, Redactor, compose, principal_of
from ductile.commands.jobs import AttemptResult
from ductile.events.log import EventLog
from ductile.events.timefmt import now_ns
from ductile.events.types import VAULT_AUDIT_STREAM
from ductile.runtime.attempt import Classified
from ductile.runtime.attestation import mismatch
from ductile.runtime.catalog import Catalog, LoadedPlugin
from ductile.system.logs import Log
from ductile.vault.document import VaultDocument
from ductile.vocabulary import AttemptOutcome

log = Log("vault")
FINGERPRINT_EVENT = "plugin.fingerprint_mismatch"


class VaultSource(Protocol):
    """The loaded vault as the dispatcher sees it (the daemon's vault keeper implements it)."""

    def document(self) -> VaultDocument | None:
        """The current in-memory document; None when no vault is loaded."""
        ...


class SecretsAtSpawn:
    def __init__(self, events: EventLog, vault: VaultSource | None) -> None:
        self._events = events
        self._vault = vault

    def prepare(self, catalog: Catalog, plugin: LoadedPlugin, job_id: str) -> Delivery | Classified:
        """The plugin's secrets for this attempt, or the fail-closed attempt result."""
        entry = plugin.entry
        doc = self._vault.document() if self._vault is not None else None
        principal = principal_of(plugin.name, entry.vault_principal)
        decision = compose(doc, plugin=plugin.name, principal=principal, requires_vault=entry.requires_vault,
                           job_id=job_id, now=now_ns(), attest=lambda d: mismatch(catalog, plugin, d))
        if decision.facts:
            facts = decision.facts
            self._events.submit_sync(lambda tx: tx.append(VAULT_AUDIT_STREAM, facts))
        if isinstance(decision, Delivery):
            return decision
        return self._refused(decision, plugin.name, principal, job_id)

    def _refused(self, refusal: DeliveryRefusal, plugin: str, principal: str, job_id: str) -> Classified:
        if refusal.mismatch_detail is not None:
            detail = refusal.mismatch_detail
            # The SSE frame comes from the logged FingerprintMismatch fact (observations.frames).
            log.warn("plugin fingerprint mismatch; job failed closed", event=FINGERPRINT_EVENT, plugin=plugin,
                     principal=principal, job_id=job_id, detail=detail)
        else:
            log.warn("plugin secrets denied; job failed closed", plugin=plugin, principal=principal, job_id=job_id,
                     error=refusal.error)
        return Classified(AttemptResult(outcome=AttemptOutcome.ERROR, error=refusal.error,
                                        permanent_reason=refusal.reason))


def redact(classified: Classified, redactor: Redactor) -> Classified:
    """Hide delivered values in what the plugin wrote back, before it is stored, logged or published:
    stderr, the raw stdout kept as ``result``, ``error``, and the response's ``logs[]``/``result``/``error``."""
    if not redactor:
        return classified
    r = classified.result
    result = msgspec.structs.replace(r, error=redactor(r.error), stderr=redactor(r.stderr),
                                     result=None if r.result is None else redactor(r.result))
    response = classified.response
    if response is not None:
        logs = tuple(msgspec.structs.replace(line, message=redactor(line.message)) for line in response.logs)
        response = msgspec.structs.replace(response, result=redactor(response.result), error=redactor(response.error),
                                           logs=logs)
    return msgspec.structs.replace(classified, result=result, response=response)
