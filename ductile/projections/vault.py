"""The vault's metadata (vault.md §3): secrets and principals without their values, and the hash of
the last blob the log knows, folded from the ``vault`` stream.

The reference reading of the events is ``commands.vault.evolve``; this projection is the same fold
in SQL (tests/property/test_vault_projection_agreement.py holds them equal). Readers come in two
forms over the same SQL: sync for the writer's transaction and the CLI, async (aiosqlite) for the
API.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ductile.events.record import Recorded
from ductile.events.store import StoreKind, dialect_of
from ductile.events.timefmt import rfc3339_seconds
from ductile.events.types import (
    VAULT_CHANGES,
    AdminTokenRotated,
    PrincipalMeta,
    PrincipalPurged,
    PrincipalRegistered,
    PrincipalRevoked,
    PrincipalRolled,
    SecretMeta,
    SecretRevoked,
    SecretRolled,
    SecretSet,
    VaultAdopted,
    VaultChange,
    VaultImported,
    VaultInitialized,
    VaultMeta,
    VaultWriteAborted,
)
from ductile.projections.projection import Projection
from ductile.vault.document import ADMIN_TOKEN, CORE
from ductile.vocabulary import PrincipalKind, PrincipalStatus, SecretPattern, SecretStatus

if TYPE_CHECKING:
    import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS vault_secrets (
  name TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  pattern TEXT NOT NULL,
  roll_count INTEGER NOT NULL,
  grants TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  revoked_at TEXT NOT NULL,
  description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vault_principals (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vault_blob (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  blob_sha256 TEXT NOT NULL,
  prev_blob_sha256 TEXT NOT NULL,
  last_change TEXT NOT NULL,
  position INTEGER NOT NULL
)
"""

PROJECTION = Projection(name="vault", version=1, schema=SCHEMA,
                         tables=("vault_secrets", "vault_principals", "vault_blob"),
                         reads_meta=False)  # projection.py


class VaultState(msgspec.Struct, frozen=True, kw_only=True):
    """The vault as the log knows it. ``last_change`` is the event type of the newest change (empty:
    no vault event yet, the boot check's "not adopted"); the hashes are the newest stamped ones."""

    meta: VaultMeta = VaultMeta()
    blob_sha256: str = ""
    prev_blob_sha256: str = ""
    last_change: str = ""


class VaultCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Counts by status (``vault status``): every status present, zero when none."""

    secrets: dict[str, int]
    principals: dict[str, int]


_grants_encoder = msgspec.json.Encoder()
_grants_decoder = msgspec.json.Decoder(list[str])


def _grants_json(cur: sqlite3.Cursor, grants: Any) -> bytes | str:
    """The ``grants`` column's value. SQLite has stored the encoder's bytes since release 1 (a BLOB
    in a TEXT column, which replays compare as such); PostgreSQL's TEXT column takes text."""
    data = _grants_encoder.encode(grants)
    return data if dialect_of(cur) is StoreKind.SQLITE else data.decode()

_UPSERT_SECRET = (
    "INSERT INTO vault_secrets(name, status, pattern, roll_count, grants, created_at, updated_at, revoked_at,"
    " description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET status=excluded.status,"
    " pattern=excluded.pattern, roll_count=excluded.roll_count, grants=excluded.grants,"
    " created_at=excluded.created_at, updated_at=excluded.updated_at, revoked_at=excluded.revoked_at,"
    " description=excluded.description"
)
_UPSERT_PRINCIPAL = (
    "INSERT INTO vault_principals(name, kind, status) VALUES (?, ?, ?)"
    " ON CONFLICT(name) DO UPDATE SET kind=excluded.kind, status=excluded.status"
)


def _put_secret(cur: sqlite3.Cursor, name: str, s: SecretMeta) -> None:
    cur.execute(_UPSERT_SECRET, (name, s.status, s.pattern, s.roll_count, _grants_json(cur, s.grants),
                                 s.created_at, s.updated_at, s.revoked_at, s.description))


def _put_principal(cur: sqlite3.Cursor, name: str, p: PrincipalMeta) -> None:
    cur.execute(_UPSERT_PRINCIPAL, (name, p.kind, p.status))


def _replace_all(cur: sqlite3.Cursor, meta: VaultMeta) -> None:
    cur.execute("DELETE FROM vault_secrets")
    cur.execute("DELETE FROM vault_principals")
    for name, s in meta.secrets.items():
        _put_secret(cur, name, s)
    for name, p in meta.principals.items():
        _put_principal(cur, name, p)


@PROJECTION.on(*VAULT_CHANGES)
def _blob(cur: sqlite3.Cursor, e: VaultChange, rec: Recorded) -> None:
    # Every change moves ``last_change``; only a stamped one moves the hashes (an event appended
    # without a blob write, e.g. a failed rotate-key before its first write, leaves them).
    cur.execute(
        "INSERT INTO vault_blob(id, blob_sha256, prev_blob_sha256, last_change, position) VALUES (1, ?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET last_change=excluded.last_change, position=excluded.position,"
        " blob_sha256=CASE WHEN excluded.blob_sha256 != '' THEN excluded.blob_sha256 ELSE vault_blob.blob_sha256 END,"
        " prev_blob_sha256=CASE WHEN excluded.blob_sha256 != '' THEN excluded.prev_blob_sha256"
        " ELSE vault_blob.prev_blob_sha256 END",
        (e.blob_sha256, e.prev_blob_sha256 if e.blob_sha256 else "", rec.type, rec.position),
    )


@PROJECTION.on(VaultInitialized)
def _initialized(cur: sqlite3.Cursor, e: VaultInitialized, rec: Recorded) -> None:
    at = rfc3339_seconds(e.at)
    _put_principal(cur, CORE, PrincipalMeta(kind=PrincipalKind.GATEWAY))
    _put_secret(cur, ADMIN_TOKEN, SecretMeta(pattern=SecretPattern.AUTO, created_at=at, updated_at=at))


@PROJECTION.on(PrincipalRegistered)
def _registered(cur: sqlite3.Cursor, e: PrincipalRegistered, rec: Recorded) -> None:
    _put_principal(cur, e.name, PrincipalMeta(kind=e.kind))


@PROJECTION.on(PrincipalRevoked)
def _principal_revoked(cur: sqlite3.Cursor, e: PrincipalRevoked, rec: Recorded) -> None:
    cur.execute("UPDATE vault_principals SET status=? WHERE name=?", (PrincipalStatus.REVOKED, e.name))


@PROJECTION.on(PrincipalPurged)
def _purged(cur: sqlite3.Cursor, e: PrincipalPurged, rec: Recorded) -> None:
    cur.execute("DELETE FROM vault_principals WHERE name=?", (e.name,))
    for secret in e.grants_removed:
        row = cur.execute("SELECT grants FROM vault_secrets WHERE name=?", (secret,)).fetchone()
        if row is not None:
            kept = [g for g in _grants_decoder.decode(row[0]) if g != e.name]
            cur.execute("UPDATE vault_secrets SET grants=? WHERE name=?", (_grants_json(cur, kept), secret))


def _rolled(cur: sqlite3.Cursor, names: Iterable[str], at: int) -> None:
    cur.executemany("UPDATE vault_secrets SET roll_count=roll_count+1, updated_at=? WHERE name=?",
                    [(rfc3339_seconds(at), name) for name in names])


@PROJECTION.on(PrincipalRolled)
def _principal_rolled(cur: sqlite3.Cursor, e: PrincipalRolled, rec: Recorded) -> None:
    _rolled(cur, e.rolled, e.at)


@PROJECTION.on(SecretSet)
def _set(cur: sqlite3.Cursor, e: SecretSet, rec: Recorded) -> None:
    at = rfc3339_seconds(e.at)
    if e.created:
        _put_secret(cur, e.name, SecretMeta(pattern=e.pattern, grants=e.grants, created_at=at, updated_at=at))
    else:
        cur.execute("UPDATE vault_secrets SET pattern=?, grants=?, updated_at=? WHERE name=?",
                    (e.pattern, _grants_json(cur, e.grants), at, e.name))


@PROJECTION.on(SecretRolled)
def _secret_rolled(cur: sqlite3.Cursor, e: SecretRolled, rec: Recorded) -> None:
    cur.execute("UPDATE vault_secrets SET roll_count=?, updated_at=? WHERE name=?",
                (e.roll_count, rfc3339_seconds(e.at), e.name))


@PROJECTION.on(AdminTokenRotated)
def _admin_rotated(cur: sqlite3.Cursor, e: AdminTokenRotated, rec: Recorded) -> None:
    at = rfc3339_seconds(e.at)
    # A vault that lost its token gets a new one (as the decider mints it).
    cur.execute(
        "INSERT INTO vault_secrets(name, status, pattern, roll_count, grants, created_at, updated_at, revoked_at,"
        " description) VALUES (?, ?, ?, ?, '[]', ?, ?, '', '') ON CONFLICT(name) DO UPDATE SET"
        " roll_count=excluded.roll_count, updated_at=excluded.updated_at",
        (ADMIN_TOKEN, SecretStatus.ACTIVE, SecretPattern.AUTO, e.roll_count, at, at),
    )


@PROJECTION.on(SecretRevoked)
def _secret_revoked(cur: sqlite3.Cursor, e: SecretRevoked, rec: Recorded) -> None:
    at = rfc3339_seconds(e.at)
    cur.execute("UPDATE vault_secrets SET status=?, revoked_at=?, updated_at=? WHERE name=?",
                (SecretStatus.REVOKED, at, at, e.name))


@PROJECTION.on(VaultImported)
def _imported(cur: sqlite3.Cursor, e: VaultImported, rec: Recorded) -> None:
    at = rfc3339_seconds(e.at)
    for name in e.names:
        _put_secret(cur, name, SecretMeta(created_at=at, updated_at=at))


@PROJECTION.on(VaultAdopted, VaultWriteAborted)
def _snapshot(cur: sqlite3.Cursor, e: VaultAdopted | VaultWriteAborted, rec: Recorded) -> None:
    _replace_all(cur, e.meta)


# --- readers -----------------------------------------------------------------------------------

_SECRETS_SQL = ("SELECT name, status, pattern, roll_count, grants, created_at, updated_at, revoked_at, description"
                " FROM vault_secrets ORDER BY name")
_PRINCIPALS_SQL = "SELECT name, kind, status FROM vault_principals ORDER BY name"
_BLOB_SQL = "SELECT blob_sha256, prev_blob_sha256, last_change FROM vault_blob WHERE id = 1"
_SECRET_COUNTS_SQL = "SELECT status, COUNT(*) FROM vault_secrets GROUP BY status"
_PRINCIPAL_COUNTS_SQL = "SELECT status, COUNT(*) FROM vault_principals GROUP BY status"


def _state(secrets: Iterable[Sequence[Any]], principals: Iterable[Sequence[Any]],
           blob: Sequence[Any] | None) -> VaultState:
    meta = VaultMeta(
        secrets={
            r[0]: SecretMeta(status=SecretStatus(r[1]), pattern=SecretPattern(r[2]), roll_count=r[3],
                             grants=_grants_decoder.decode(r[4]), created_at=r[5], updated_at=r[6],
                             revoked_at=r[7], description=r[8])
            for r in secrets
        },
        principals={r[0]: PrincipalMeta(kind=PrincipalKind(r[1]), status=PrincipalStatus(r[2])) for r in principals},
    )
    if blob is None:
        return VaultState(meta=meta)
    return VaultState(meta=meta, blob_sha256=blob[0], prev_blob_sha256=blob[1], last_change=blob[2])


def _counts(secrets: Iterable[Sequence[Any]], principals: Iterable[Sequence[Any]]) -> VaultCounts:
    def by_status(rows: Iterable[Sequence[Any]], statuses: Iterable[str]) -> dict[str, int]:
        found = {r[0]: r[1] for r in rows}
        return {str(s): found.get(s, 0) for s in statuses}

    return VaultCounts(secrets=by_status(secrets, SecretStatus), principals=by_status(principals, PrincipalStatus))


def load_state(cur: sqlite3.Cursor) -> VaultState:
    """The whole vault metadata and the last blob hashes (names sorted)."""
    return _state(cur.execute(_SECRETS_SQL).fetchall(), cur.execute(_PRINCIPALS_SQL).fetchall(),
                  cur.execute(_BLOB_SQL).fetchone())


def counts(cur: sqlite3.Cursor) -> VaultCounts:
    return _counts(cur.execute(_SECRET_COUNTS_SQL).fetchall(), cur.execute(_PRINCIPAL_COUNTS_SQL).fetchall())


async def fetch_state(conn: aiosqlite.Connection) -> VaultState:
    """``load_state`` on an aiosqlite read connection (API, ``ReadPool.read``)."""
    blob = list(await conn.execute_fetchall(_BLOB_SQL))
    return _state(await conn.execute_fetchall(_SECRETS_SQL), await conn.execute_fetchall(_PRINCIPALS_SQL),
                  blob[0] if blob else None)


async def fetch_counts(conn: aiosqlite.Connection) -> VaultCounts:
    return _counts(await conn.execute_fetchall(_SECRET_COUNTS_SQL),
                   await conn.execute_fetchall(_PRINCIPAL_COUNTS_SQL))
