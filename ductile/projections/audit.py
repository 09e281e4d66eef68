"""The vault audit trail (vault.md §12): one record per row of §12's table, keyed by log position.

Changes are audited by the change's own event (the event is the change); reads, deliveries and
denials by their audit-only facts. ``vault_audit_grants`` remembers every (principal, secret) grant
ever seen, so ``--principal`` also finds rows about a secret since ungranted or purged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from ductile.events.record import Recorded
from ductile.events.timefmt import rfc3339
from ductile.events.types import (
    AdminTokenRotated,
    DeliveryRefused,
    FingerprintMismatch,
    PrincipalPurged,
    PrincipalRegistered,
    PrincipalRevoked,
    PrincipalRolled,
    SecretDenied,
    SecretRead,
    SecretRevoked,
    SecretRolled,
    SecretsDelivered,
    SecretSet,
    VaultAdopted,
    VaultAuthFailed,
    VaultImported,
    VaultInitialized,
    VaultKeyRotated,
    VaultMeta,
    VaultWriteAborted,
)
from ductile.projections.projection import Projection
from ductile.vault.document import ADMIN_TOKEN, CORE
from ductile.vocabulary import AuditOp, AuditOutcome, VaultActor

if TYPE_CHECKING:
    import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS vault_audit (
  position INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  op TEXT NOT NULL,
  principal TEXT,
  secret_name TEXT,
  actor TEXT,
  outcome TEXT NOT NULL,
  detail TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (position, seq)
);
CREATE INDEX IF NOT EXISTS vault_audit_principal ON vault_audit(principal, position);
CREATE INDEX IF NOT EXISTS vault_audit_secret ON vault_audit(secret_name, position);
CREATE TABLE IF NOT EXISTS vault_audit_grants (
  principal TEXT NOT NULL,
  secret_name TEXT NOT NULL,
  PRIMARY KEY (principal, secret_name)
)
"""

PROJECTION = Projection(name="audit", version=1, schema=SCHEMA, tables=("vault_audit", "vault_audit_grants"), reads_meta=False)

DEFAULT_LIMIT = 50
LIMIT_NOT_POSITIVE = "--limit must be > 0"


class AuditRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One audit record as ``system vault-audit --json`` prints it (empty fields omitted)."""

    id: int  # the log position of the event
    op: AuditOp
    principal: str | None = None
    secret_name: str | None = None
    actor: str | None = None
    outcome: AuditOutcome
    detail: str | None = None
    created_at: str  # the event's ``at``, RFC3339 UTC


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``--principal``: rows whose principal is it plus rows about any secret ever granted to it;
    ``--secret``: rows about that secret; both: both hold."""

    principal: str | None = None
    secret: str | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.limit <= 0:
            raise ValueError(LIMIT_NOT_POSITIVE)


class AuditPage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The JSON of ``system vault-audit`` (vault.md §12), newest first."""

    principal: str | None = None
    secret: str | None = None
    rows: list[AuditRow]


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    op: AuditOp
    outcome: AuditOutcome = AuditOutcome.OK
    actor: str
    principal: str = ""
    secret_name: str = ""
    detail: str = ""


_INSERT = ("INSERT INTO vault_audit(position, seq, op, principal, secret_name, actor, outcome, detail, created_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _write(cur: sqlite3.Cursor, rec: Recorded, records: Iterable[_Record]) -> None:
    at = rfc3339(rec.event.at)
    cur.executemany(_INSERT, [(rec.position, seq, r.op, r.principal or None, r.secret_name or None, r.actor or None,
                               r.outcome, r.detail or None, at) for seq, r in enumerate(records)])


def _granted(cur: sqlite3.Cursor, pairs: Iterable[tuple[str, str]]) -> None:
    cur.executemany("INSERT OR IGNORE INTO vault_audit_grants(principal, secret_name) VALUES (?, ?)", list(pairs))


def _snapshot_grants(meta: VaultMeta) -> list[tuple[str, str]]:
    return [(p, name) for name, s in meta.secrets.items() for p in s.grants]


def _names(names: Iterable[str]) -> str:
    return ",".join(names)


@PROJECTION.on(VaultInitialized)
def _init(cur: sqlite3.Cursor, e: VaultInitialized, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.INIT, actor=e.actor, principal=CORE, secret_name=ADMIN_TOKEN)])


@PROJECTION.on(PrincipalRegistered)
def _register(cur: sqlite3.Cursor, e: PrincipalRegistered, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.REGISTER, actor=e.actor, principal=e.name, detail=f"kind={e.kind}")])


@PROJECTION.on(SecretSet)
def _set(cur: sqlite3.Cursor, e: SecretSet, rec: Recorded) -> None:
    how = "created" if e.created else "updated"
    _write(cur, rec, [_Record(op=AuditOp.SET, actor=e.actor, secret_name=e.name,
                              detail=f"pattern={e.pattern} {how} grants={_names(e.grants)}")])
    _granted(cur, ((p, e.name) for p in e.grants))


@PROJECTION.on(SecretRolled)
def _roll(cur: sqlite3.Cursor, e: SecretRolled, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.ROLL, actor=e.actor, secret_name=e.name, detail=f"roll_count={e.roll_count}")])


@PROJECTION.on(SecretRevoked)
def _revoke(cur: sqlite3.Cursor, e: SecretRevoked, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.REVOKE, actor=e.actor, secret_name=e.name)])


@PROJECTION.on(PrincipalRevoked)
def _revoke_principal(cur: sqlite3.Cursor, e: PrincipalRevoked, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.REVOKE_PRINCIPAL, actor=e.actor, principal=e.name)])


@PROJECTION.on(PrincipalPurged)
def _purge_principal(cur: sqlite3.Cursor, e: PrincipalPurged, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.PURGE_PRINCIPAL, actor=e.actor, principal=e.name,
                              detail=f"grants_removed={len(e.grants_removed)}")])


@PROJECTION.on(PrincipalRolled)
def _roll_principal(cur: sqlite3.Cursor, e: PrincipalRolled, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.ROLL_PRINCIPAL, actor=e.actor, principal=e.name,
                              detail=f"rolled={len(e.rolled)} skipped={len(e.skipped)}")])


@PROJECTION.on(AdminTokenRotated)
def _rotate_admin_token(cur: sqlite3.Cursor, e: AdminTokenRotated, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.ROTATE_ADMIN_TOKEN, actor=e.actor, secret_name=ADMIN_TOKEN)])


@PROJECTION.on(VaultKeyRotated)
def _rotate_key(cur: sqlite3.Cursor, e: VaultKeyRotated, rec: Recorded) -> None:
    detail = f"recipient={e.recipient}" if e.outcome == AuditOutcome.OK else f"step={e.step} error={e.error}"
    _write(cur, rec, [_Record(op=AuditOp.ROTATE_KEY, outcome=e.outcome, actor=e.actor, detail=detail)])


@PROJECTION.on(VaultImported)
def _import(cur: sqlite3.Cursor, e: VaultImported, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.IMPORT, actor=e.actor, secret_name=name) for name in e.names])


@PROJECTION.on(VaultAdopted)
def _adopt(cur: sqlite3.Cursor, e: VaultAdopted, rec: Recorded) -> None:
    if e.initial:
        detail = "initial"
    else:
        parts = (("added", e.added), ("removed", e.removed), ("changed", e.changed))
        detail = " ".join(f"{label}={_names(names)}" for label, names in parts if names)
    _write(cur, rec, [_Record(op=AuditOp.ADOPT, actor=e.actor, detail=detail)])
    _granted(cur, _snapshot_grants(e.meta))


@PROJECTION.on(VaultWriteAborted)
def _abort(cur: sqlite3.Cursor, e: VaultWriteAborted, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.ABORT, outcome=AuditOutcome.ABORTED, actor=e.actor)])
    _granted(cur, _snapshot_grants(e.meta))


@PROJECTION.on(SecretRead)
def _read(cur: sqlite3.Cursor, e: SecretRead, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.READ, outcome=e.outcome, actor=e.actor, secret_name=e.name)])


@PROJECTION.on(SecretsDelivered)
def _deliver(cur: sqlite3.Cursor, e: SecretsDelivered, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.DELIVER, actor=VaultActor.CORE, principal=e.principal, secret_name=name,
                              detail=f"job_id={e.job_id}") for name in e.names])


@PROJECTION.on(SecretDenied)
def _deny(cur: sqlite3.Cursor, e: SecretDenied, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.DENY, outcome=AuditOutcome.DENIED, actor=VaultActor.CORE,
                              principal=e.principal, secret_name=e.name, detail=f"reason={e.reason} job_id={e.job_id}")])


@PROJECTION.on(DeliveryRefused)
def _compose_denial(cur: sqlite3.Cursor, e: DeliveryRefused, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.COMPOSE_DENIAL, outcome=AuditOutcome.DENIED, actor=VaultActor.CORE,
                              principal=e.principal, detail=f"reason={e.reason} job_id={e.job_id}")])


@PROJECTION.on(FingerprintMismatch)
def _fingerprint_mismatch(cur: sqlite3.Cursor, e: FingerprintMismatch, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.FINGERPRINT_MISMATCH, outcome=AuditOutcome.SECURITY_ALERT,
                              actor=VaultActor.CORE, principal=e.principal,
                              detail=f"plugin={e.plugin} job_id={e.job_id} {e.detail}")])


@PROJECTION.on(VaultAuthFailed)
def _auth_failed(cur: sqlite3.Cursor, e: VaultAuthFailed, rec: Recorded) -> None:
    _write(cur, rec, [_Record(op=AuditOp.AUTH_FAILED, outcome=AuditOutcome.DENIED, actor=VaultActor.UNKNOWN,
                              detail=f"path={e.path} remote={e.remote}")])


# --- readers -----------------------------------------------------------------------------------

_QUERY_SQL = (
    "SELECT position, op, principal, secret_name, actor, outcome, detail, created_at FROM vault_audit"
    # CAST: PostgreSQL types a parameter by its first use, and ``IS NULL`` gives it none.
    " WHERE (CAST(:principal AS TEXT) IS NULL OR principal = :principal"
    "   OR secret_name IN (SELECT secret_name FROM vault_audit_grants WHERE principal = :principal))"
    " AND (CAST(:secret AS TEXT) IS NULL OR secret_name = :secret)"
    " ORDER BY position DESC, seq DESC LIMIT :limit"
)


def _params(q: AuditQuery) -> dict[str, Any]:
    return {"principal": q.principal, "secret": q.secret, "limit": q.limit}


def _page(q: AuditQuery, rows: Iterable[tuple[Any, ...]]) -> AuditPage:
    return AuditPage(
        principal=q.principal, secret=q.secret,
        rows=[AuditRow(id=r[0], op=AuditOp(r[1]), principal=r[2], secret_name=r[3], actor=r[4],
                       outcome=AuditOutcome(r[5]), detail=r[6], created_at=r[7]) for r in rows],
    )


def query(cur: sqlite3.Cursor, q: AuditQuery) -> AuditPage:
    """``system vault-audit``: the newest ``q.limit`` records that match, newest first."""
    return _page(q, cur.execute(_QUERY_SQL, _params(q)).fetchall())


async def fetch_query(conn: aiosqlite.Connection, q: AuditQuery) -> AuditPage:
    """``query`` on an aiosqlite read connection (``ReadPool.read``)."""
    return _page(q, await conn.execute_fetchall(_QUERY_SQL, _params(q)))
