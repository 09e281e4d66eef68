"""The vault's use cases (vault.md §3–§8): the one place that holds the decrypted document, the
keyring and the blob file together, and the one write path every vault change takes.

A change, in ONE writer transaction: ``decide`` (pure) → ``blob.prepare`` (marshal, skip if
unchanged, external-modification check, encrypt) → append the change's events stamped with the new
blob's hash. Only after that commit returns is the blob written (``blob.commit``). If that write
fails, ``VaultWriteAborted`` is appended at once and memory goes back to the last written blob, so
memory, disk and log never disagree for longer than one call. Writes are serialised by one lock:
``prepare`` and ``commit`` are one write of one ``BlobFile``.

The same keeper serves the daemon (``events`` is the gateway's ``EventLog``; async callers go
through ``asyncio.to_thread``) and the local CLI commands (``events`` is an ``EventLog`` the CLI
opened as another process, ARCHITECTURE §3, or None when there is no state DB yet: the change is
then not logged and the next boot adopts the blob).

Nothing here logs, raises or reprs a value: refusals carry the spec's texts, the document's repr is
sealed, and ``get`` returns its value only after its ``read`` record is committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ductile.commands import vault as decider
from ductile.commands.vault import (
    MISMATCH_REFUSAL,
    Command,
    Decision,
    ImportSecrets,
    InitVault,
    RollPrincipal,
    RollSecret,
    RotateAdminToken,
    SetSecret,
)
from ductile.config.loader import DEFAULT_VAULT_FILE
from ductile.events.types import (
    VAULT_AUDIT_STREAM,
    VAULT_STREAM,
    SecretRead,
    VaultChange,
    VaultKeyRotated,
    VaultReencrypted,
)
from ductile.projections import audit as audit_projection
from ductile.projections import vault as vault_projection
from ductile.projections.audit import AuditPage, AuditQuery
from ductile.projections.vault import VaultState
from ductile.vault import mint as minting
from ductile.vault.blob import BlobFile, BlobWriteFailed, PreparedWrite
from ductile.vault.document import ADMIN_TOKEN, VaultDocument
from ductile.vault.keys import Keyring, parse_recipient, resolve_keyring
from ductile.vault.rotation import BlobWrite, RotationAborted, RotationResult, rotate_key
from ductile.vocabulary import AuditOutcome, SecretPattern, SecretStatus, VaultActor, VaultAgreement

if TYPE_CHECKING:
    from ductile.config.model import Config
    from ductile.events.log import EventLog, WriteTx

Mint = Callable[[], str]
Clock = Callable[[], int]

NO_KEY_REFUSAL = "vault {path} exists but no age key was found (set secrets.age_key_file or DUCTILE_AGE_KEY_FILE)"
NOT_AUDITED = "no state database yet; read not audited"


class VaultReadRefused(Exception):
    """``vault get`` refused (vault.md §6); the text names the secret, never a value."""


class VaultMismatch(Exception):
    """The boot check's refusal (vault.md §3)."""

    def __init__(self) -> None:
        super().__init__(MISMATCH_REFUSAL)


class WriteOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a change did: the decision (no value in its repr) and whether a blob was written."""

    decision: Decision
    written: bool


def _reserved_read(name: str) -> str:
    return (f'secret "{name}" is reserved (the management-API credential) and is never printed by '
            "'vault get'")


class VaultKeeper:
    """The loaded vault: keyring, blob file, the in-memory document and the write lock."""

    def __init__(self, blob: BlobFile, keyring: Keyring, document: VaultDocument | None,
                 events: EventLog | None, *, mint: Mint = minting.secret_value, clock: Clock = time.time_ns) -> None:
        self.blob = blob
        self.keyring = keyring
        self.events = events
        self._document = document
        self._mint = mint
        self._clock = clock
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VaultKeeper({str(self.blob.path)!r}, loaded={self._document is not None})"

    @classmethod
    def load(cls, vault_path: Path, keyring: Keyring, events: EventLog | None, **kw: object) -> VaultKeeper:
        """Read and decrypt the blob (fails closed: a missing or unreadable vault is an error)."""
        blob = BlobFile(vault_path)
        document = blob.read(keyring.identities)
        return cls(blob, keyring, document, events, **kw)  # type: ignore[arg-type]

    def document(self) -> VaultDocument | None:
        """The current in-memory document (with values): the delivery path reads it per spawn."""
        return self._document

    # --- the one write path ------------------------------------------------------------------

    def _recipients(self) -> list[object]:
        return [parse_recipient(r) for r in self.keyring.recipients]

    def apply(self, cmd: Command) -> WriteOutcome:
        """Decide ``cmd`` and make it true in log and blob (vault.md §3 order); raises the
        decider's refusals, ``BlobModifiedExternally`` (nothing written) or ``BlobWriteFailed``
        (``VaultWriteAborted`` appended, memory rolled back)."""
        with self._lock:
            return self._apply(cmd)

    def _apply(self, cmd: Command) -> WriteOutcome:
        recipients = self._recipients()
        prepared_box: list[PreparedWrite] = []

        def unit(now: int, append: Callable[[list[VaultChange]], None] | None) -> Decision:
            decision = decider.decide(cmd, self._document, now, self._mint)
            if not decision.events:
                return decision
            prepared = self.blob.prepare(decision.document, recipients)  # type: ignore[arg-type]
            if prepared is None:
                return decision
            prepared_box[:] = [prepared]  # the last run's: an earlier run of the unit was rolled back
            if append is not None:
                append(decider.stamp(decision.events, prepared.sha256, prepared.prev_sha256))
            return decision

        if self.events is None:
            decision = unit(self._clock(), None)
        else:
            decision = self.events.submit_sync(
                lambda tx: unit(tx.now, lambda evs: tx.append(VAULT_STREAM, evs)))
        if not prepared_box:
            return WriteOutcome(decision=decision, written=False)
        self._commit(prepared_box[0], decision.events[0] if decision.events else None)
        self._document = decision.document
        return WriteOutcome(decision=decision, written=True)

    def _commit(self, prepared: PreparedWrite, change: VaultChange | None) -> None:
        try:
            self.blob.commit(prepared)
        except BlobWriteFailed:
            self._abort(prepared, type(change).__name__ if change else "")
            raise

    def _abort(self, prepared: PreparedWrite, change: str) -> None:
        """The blob did not land: say so in the log at once and go back to the last written blob."""
        on_disk = self.blob.last_written()
        self._document = on_disk
        if self.events is None:
            return
        state = VaultState(blob_sha256=prepared.sha256, prev_blob_sha256=prepared.prev_sha256, last_change=change)

        def unit(tx: WriteTx) -> None:
            event = decider.aborted(state, on_disk, tx.now)
            tx.append(VAULT_STREAM, decider.stamp([event], prepared.prev_sha256, prepared.sha256))

        self.events.submit_sync(unit)

    # --- use cases (the data plane: what `/vault/*` and offline `set` call) --------------------

    def set(self, name: str, value: str = "", pattern: str = "", grants: list[str] | None = None,
            actor: VaultActor = VaultActor.ADMIN_TOKEN) -> WriteOutcome:
        return self.apply(SetSecret(name=name, value=value, pattern=pattern, grants=grants, actor=actor))

    def roll(self, name: str, value: str = "", actor: VaultActor = VaultActor.ADMIN_TOKEN) -> WriteOutcome:
        return self.apply(RollSecret(name=name, value=value, actor=actor))

    def roll_principal(self, name: str, actor: VaultActor = VaultActor.ADMIN_TOKEN) -> WriteOutcome:
        return self.apply(RollPrincipal(name=name, actor=actor))

    def rotate_admin_token(self) -> str:
        """A new admin token (the old one stops working at once); returned for stdout, once."""
        outcome = self.apply(RotateAdminToken())
        return outcome.decision.document.secrets[ADMIN_TOKEN].value

    def import_secrets(self, entries: list[tuple[str, str]]) -> WriteOutcome:
        return self.apply(ImportSecrets(entries=entries))

    # --- local reads ---------------------------------------------------------------------------

    def read_secret(self, name: str) -> str:
        """``vault get``: the value, after its ``read`` record is committed (vault.md §6). With no
        state DB (``events`` None) the caller prints ``NOT_AUDITED`` first."""
        doc = self._document
        if doc is None:
            raise VaultReadRefused(f'unknown secret "{name}"')
        if name == ADMIN_TOKEN:
            self._audit_read(name, AuditOutcome.DENIED)
            raise VaultReadRefused(_reserved_read(name))
        secret = doc.secrets.get(name)
        if secret is None:
            raise VaultReadRefused(f'unknown secret "{name}"')
        if secret.status == SecretStatus.REVOKED:
            self._audit_read(name, AuditOutcome.DENIED)
            raise VaultReadRefused(f'secret "{name}" is revoked (value cleared)')
        if not secret.value:
            self._audit_read(name, AuditOutcome.DENIED)
            pattern = SecretPattern(secret.pattern)
            raise VaultReadRefused(f'secret "{name}" has no value yet (pattern {pattern}; run \'vault roll\' to mint)')
        self._audit_read(name, AuditOutcome.OK)
        return secret.value

    def _audit_read(self, name: str, outcome: AuditOutcome) -> None:
        if self.events is None:
            return
        self.events.submit_sync(lambda tx: tx.append(VAULT_AUDIT_STREAM, [SecretRead(name=name, outcome=outcome,
                                                                                      at=tx.now)]))

    # --- adopt and the boot check ------------------------------------------------------------------

    def adopt(self, *, initial: bool, actor: VaultActor) -> None:
        """The on-disk blob (already read) accepted as truth: ``VaultAdopted`` with the names diff."""
        doc, sha = self._document, self.blob.sha256
        if doc is None or sha is None or self.events is None:
            raise RuntimeError("adopt needs a loaded vault and the event log")

        def unit(tx: WriteTx) -> None:
            state = vault_projection.load_state(tx.cur)
            event = decider.adopted(state.meta, doc, initial, actor, tx.now)
            tx.append(VAULT_STREAM, decider.stamp([event], sha, state.blob_sha256))

        with self._lock:
            self.events.submit_sync(unit)

    def settle_boot(self) -> VaultAgreement:
        """vault.md §3 at boot: agree → nothing; the last write never landed → ``VaultWriteAborted``;
        a blob but no vault event → ``VaultAdopted`` (initial); anything else → ``VaultMismatch``."""
        doc, sha = self._document, self.blob.sha256
        if doc is None or sha is None or self.events is None:
            raise RuntimeError("the boot check needs a loaded vault and the event log")
        outcome: list[VaultAgreement] = []

        def unit(tx: WriteTx) -> None:
            state = vault_projection.load_state(tx.cur)
            agreement = decider.agreement(state, sha)
            outcome[:] = [agreement]  # the last run's (the writer may run a unit again)
            if agreement == VaultAgreement.UNLANDED_WRITE:
                event = decider.aborted(state, doc, tx.now)
                tx.append(VAULT_STREAM, decider.stamp([event], sha, state.blob_sha256))
            elif agreement == VaultAgreement.NOT_ADOPTED:
                adopted = decider.adopted(state.meta, doc, True, VaultActor.CORE, tx.now)
                tx.append(VAULT_STREAM, decider.stamp([adopted], sha, ""))

        with self._lock:
            self.events.submit_sync(unit)
        if outcome[0] == VaultAgreement.MISMATCH:
            raise VaultMismatch()
        return outcome[0]

    # --- rotate-key ----------------------------------------------------------------------------

    def rotate_key(self, **hooks: object) -> RotationResult:
        """vault.md §8: each blob write preceded by its ``VaultReencrypted``; the end audited by
        ``VaultKeyRotated`` (ok, or failed with the step and the error)."""
        events = self.events

        def before_write(which: BlobWrite, prepared: PreparedWrite) -> None:
            if events is not None:
                events.submit_sync(lambda tx: tx.append(VAULT_STREAM, decider.stamp(
                    [VaultReencrypted(step=str(which), actor=VaultActor.CLI, at=tx.now)],
                    prepared.sha256, prepared.prev_sha256)))

        def finish(outcome: AuditOutcome, **fields: str) -> None:
            # Unstamped: the blob hashes stay those of the last VaultReencrypted, the file on disk.
            if events is not None:
                events.submit_sync(lambda tx: tx.append(VAULT_STREAM, [
                    VaultKeyRotated(outcome=outcome, actor=VaultActor.CLI, at=tx.now, **fields)]))

        identity = self.keyring.identities[0]
        with self._lock:
            try:
                result = rotate_key(key_path=self.keyring.path, vault_path=self.blob.path, identity=identity,
                                    before_write=before_write, **hooks)  # type: ignore[arg-type]
            except RotationAborted as exc:
                finish(AuditOutcome.FAILED, step=exc.step.name.lower(), error=exc.cause)
                raise
            finish(AuditOutcome.OK, recipient=result.recipient)
        return result


def init_vault(vault_path: Path, keyring: Keyring, events: EventLog | None, *, mint: Mint = minting.secret_value,
               clock: Clock = time.time_ns) -> tuple[VaultKeeper, str]:
    """``vault init``: a new vault with ``core`` + nonce and the admin token; the token is returned
    once for stdout. Refuses an existing blob (``VaultExists``)."""
    keeper = VaultKeeper(BlobFile(vault_path), keyring, None, events, mint=mint, clock=clock)
    if keeper.blob.exists():
        from ductile.commands.errors import VaultExists

        raise VaultExists(str(vault_path))
    outcome = keeper.apply(InitVault(vault_path=str(vault_path)))
    return keeper, outcome.decision.document.secrets[ADMIN_TOKEN].value


def read_audit(cur: object, query: AuditQuery) -> AuditPage:
    """``system vault-audit``: the audit projection, newest first."""
    return audit_projection.query(cur, query)  # type: ignore[arg-type]


# --- boot (the composition root calls this; vault.md §1, §3) -----------------------------------


class VaultBootRefused(Exception):
    """A vault that stops boot: the message is the spec's text."""


def vault_path(config: Config) -> Path:
    """``secrets.vault_file`` (the loader fills in ``<configDir>/vault.age``)."""
    return config.secrets.vault_file or config.source.config_dir / DEFAULT_VAULT_FILE


def resolve_key(config: Config, environ: Mapping[str, str], home: Path) -> Keyring | None:
    """The age key by vault.md §1's order; AgeKeyError for a named key that is missing or refused."""
    return resolve_keyring(environ, config.secrets.age_key_file, config.source.config_dir, home)


def boot_vault(config: Config, events: EventLog, environ: Mapping[str, str], home: Path) -> VaultKeeper | None:
    """Load the vault for the gateway and settle it with the log; None when there is no vault.
    Raises VaultBootRefused (no key for an existing vault, or §3's mismatch), AgeKeyError or
    VaultBlobError (fail closed: never an empty vault)."""
    path = vault_path(config)
    keyring = resolve_key(config, environ, home)
    if not path.exists():
        return None
    if keyring is None:
        raise VaultBootRefused(NO_KEY_REFUSAL.format(path=path))
    keeper = VaultKeeper.load(path, keyring, events)
    try:
        keeper.settle_boot()
    except VaultMismatch as exc:
        raise VaultBootRefused(str(exc)) from None
    return keeper


# --- vault status (vault.md §6) ------------------------------------------------------------------


def vault_status(config: Config, environ: Mapping[str, str], home: Path) -> tuple[dict[str, object], str | None]:
    """The status document, in the spec's key order, and the error line (``no vault at ...``).
    Works with the gateway running: the blob and the key are read, the state DB only read-only."""
    from ductile.system.pidlock import holder, pid_path
    from ductile.vault.blob import VaultBlobError, VaultMissing, recipient_count, sha256_hex
    from ductile.vault.keys import AgeKeyError, key_mode, load_keyring, locate_key, mode_text

    path = vault_path(config)
    blob = path.read_bytes() if path.exists() else None
    key_path: str | None = None
    mode: str | None = None
    decrypts: bool | None = None
    try:
        location = locate_key(environ, config.secrets.age_key_file, config.source.config_dir, home)
    except AgeKeyError:
        location = None
        decrypts = False if blob is not None else None
    if location is not None:
        key_path = str(location.path)
        try:
            mode = mode_text(key_mode(location.path))
            if blob is not None:
                BlobFile(path).read(load_keyring(location.path).identities)
                decrypts = True
        except (AgeKeyError, VaultBlobError):
            decrypts = False
    recipients: int | None = None
    if blob is not None:
        try:
            recipients = recipient_count(blob, path)
        except VaultBlobError:
            recipients = None
    counts: vault_projection.VaultCounts | None = None
    agreement: VaultAgreement | None = None
    store = config.store()
    if store.exists():
        conn = store.reader()
        try:
            cur = conn.cursor()
            counts = vault_projection.counts(cur)
            if blob is not None:
                agreement = decider.agreement(vault_projection.load_state(cur), sha256_hex(blob))
        except store.errors:
            counts, agreement = None, None
        finally:
            conn.close()
    elif blob is not None:
        agreement = VaultAgreement.NOT_ADOPTED
    pid = holder(pid_path(config.state_path))
    exists = blob is not None
    report: dict[str, object] = {
        "vault_path": str(path), "exists": exists, "key_path": key_path, "key_mode": mode, "decrypts": decrypts,
        "recipients": recipients,
        "principals": counts.principals if counts is not None and exists else None,
        "secrets": counts.secrets if counts is not None and exists else None,
        "agreement": agreement,
        "management_socket": str(config.api.management_socket) if config.api.management_socket else None,
        "gateway_running": pid is not None, "pid": pid if pid is not None and pid > 0 else None,
    }
    return report, None if exists else str(VaultMissing(path))
