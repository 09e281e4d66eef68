"""The vault audit projection (vault.md §12): one record per row of the table with its exact detail,
and the ``system vault-audit`` query (newest first, --limit, --principal's "ever granted" rule)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from ductile.commands.vault import metadata_of
from ductile.events.record import Recorded
from ductile.events.store import StoreKind
from ductile.events.timefmt import parse_rfc3339
from ductile.events.types import (
    AdminTokenRotated,
    DeliveryRefused,
    EventBase,
    FingerprintMismatch,
    PrincipalMeta,
    PrincipalPurged,
    PrincipalRegistered,
    PrincipalRevoked,
    PrincipalRolled,
    SecretDenied,
    SecretMeta,
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
    VaultReencrypted,
    VaultWriteAborted,
)
from ductile.projections import audit, vault
from ductile.projections.runner import ProjectionRunner
from ductile.vault.document import VaultDocument
from ductile.vocabulary import (
    AuditOutcome,
    PrincipalKind,
    SecretDenialReason,
    SecretPattern,
    VaultActor,
)
from tests.async_reads import run_read

AT = parse_rfc3339("2026-11-27T10:00:00Z")


@pytest.fixture(params=[StoreKind.SQLITE, StoreKind.POSTGRES], ids=str)
def new_audit(request: pytest.FixtureRequest) -> Iterator[Callable[[], Audit]]:
    """``new_audit()``: the projections on an empty in-memory SQLite database, or on a fresh
    database of the test server (the conformance suite's two stores, tests/stores.py)."""
    opened: list[Any] = []

    def make() -> Audit:
        if request.param is StoreKind.SQLITE:
            conn: Any = sqlite3.connect(":memory:")
        else:
            from ductile.events.pg_cursor import PgConnection

            conn = PgConnection.connect(request.getfixturevalue("pg_url"))
        opened.append(conn)
        return Audit(conn)

    yield make
    for conn in opened:
        conn.close()
ADMIN, CLI, CORE_ACTOR = VaultActor.ADMIN_TOKEN, VaultActor.CLI, VaultActor.CORE


class Audit:
    """The vault and audit projections on an empty database of either store, fed event by event."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.runner = ProjectionRunner([vault.PROJECTION, audit.PROJECTION])
        self.cur = self.conn.cursor()
        for p in self.runner.projections:
            p.create(self.cur)
        self.position = 0

    def apply(self, *events: EventBase) -> None:
        for e in events:
            self.position += 1
            self.runner.apply(self.cur, Recorded(position=self.position, event_id=b"", stream="vault", version=1,
                                                 type=type(e).__name__, schema=1, recorded_at=e.at, event=e))

    def rows(self, **query: object) -> list[dict[str, object]]:
        page = audit.query(self.cur, audit.AuditQuery(**query))  # type: ignore[arg-type]
        return [msgspec.to_builtins(r) for r in page.rows]


# (event, the record §12 gives it: op, principal, secret_name, actor, outcome, detail)
ROWS = [
    (VaultInitialized(actor=CLI, at=AT), ("init", "core", "core-admin-token", "cli", "ok", None)),
    (PrincipalRegistered(name="mailer", kind=PrincipalKind.PLUGIN, actor=ADMIN, at=AT),
     ("register", "mailer", None, "core-admin-token", "ok", "kind=plugin")),
    (SecretSet(name="smtp", created=True, pattern=SecretPattern.MANUAL, grants=["mailer", "relay"], actor=ADMIN,
               at=AT), ("set", None, "smtp", "core-admin-token", "ok", "pattern=manual created grants=mailer,relay")),
    (SecretSet(name="smtp", created=False, pattern=SecretPattern.AUTO, actor=CLI, at=AT),
     ("set", None, "smtp", "cli", "ok", "pattern=auto updated grants=")),
    (SecretRolled(name="smtp", roll_count=3, actor=ADMIN, at=AT),
     ("roll", None, "smtp", "core-admin-token", "ok", "roll_count=3")),
    (SecretRevoked(name="smtp", actor=ADMIN, at=AT), ("revoke", None, "smtp", "core-admin-token", "ok", None)),
    (PrincipalRevoked(name="mailer", actor=ADMIN, at=AT),
     ("revoke_principal", "mailer", None, "core-admin-token", "ok", None)),
    (PrincipalPurged(name="mailer", grants_removed=["a", "b"], actor=ADMIN, at=AT),
     ("purge_principal", "mailer", None, "core-admin-token", "ok", "grants_removed=2")),
    (PrincipalRolled(name="mailer", rolled=["a", "b"], skipped=["c"], actor=ADMIN, at=AT),
     ("roll_principal", "mailer", None, "core-admin-token", "ok", "rolled=2 skipped=1")),
    (AdminTokenRotated(roll_count=1, actor=CLI, at=AT),
     ("rotate-admin-token", None, "core-admin-token", "cli", "ok", None)),
    (VaultKeyRotated(outcome=AuditOutcome.OK, recipient="age1xyz", actor=CLI, at=AT),
     ("rotate-key", None, None, "cli", "ok", "recipient=age1xyz")),
    (VaultKeyRotated(outcome=AuditOutcome.FAILED, step="verify", error="decrypt failed", actor=CLI, at=AT),
     ("rotate-key", None, None, "cli", "failed", "step=verify error=decrypt failed")),
    (VaultAdopted(initial=True, meta=VaultMeta(), actor=CORE_ACTOR, at=AT), ("adopt", None, None, "core", "ok",
                                                                            "initial")),
    (VaultAdopted(initial=False, meta=VaultMeta(), added=["x"], changed=["y", "z"], actor=CLI, at=AT),
     ("adopt", None, None, "cli", "ok", "added=x changed=y,z")),
    (VaultWriteAborted(aborted="SecretSet", meta=VaultMeta(), actor=CORE_ACTOR, at=AT),
     ("abort", None, None, "core", "aborted", None)),
    (SecretRead(name="smtp", outcome=AuditOutcome.OK, at=AT), ("read", None, "smtp", "cli", "ok", None)),
    (SecretRead(name="smtp", outcome=AuditOutcome.DENIED, at=AT), ("read", None, "smtp", "cli", "denied", None)),
    (SecretDenied(principal="mailer", name="smtp", reason=SecretDenialReason.SECRET_NO_VALUE, job_id="j9", at=AT),
     ("deny", "mailer", "smtp", "core", "denied", "reason=secret_no_value job_id=j9")),
    (DeliveryRefused(principal="mailer", reason="principal_revoked", job_id="j9", at=AT),
     ("compose_denial", "mailer", None, "core", "denied", "reason=principal_revoked job_id=j9")),
    (FingerprintMismatch(principal="mailer", plugin="mail", job_id="j9", detail="entrypoint changed", at=AT),
     ("fingerprint_mismatch", "mailer", None, "core", "security_alert", "plugin=mail job_id=j9 entrypoint changed")),
    (VaultAuthFailed(path="/vault/secret", remote="10.0.0.7", at=AT),
     ("auth_failed", None, None, "unknown", "denied", "path=/vault/secret remote=10.0.0.7")),
]


@pytest.mark.parametrize(("event", "expected"), ROWS, ids=[f"{r[1][0]}-{i}" for i, r in enumerate(ROWS)])
def test_each_fact_gives_the_record_of_its_table_row(new_audit, event, expected):
    a = new_audit()
    a.apply(event)
    keys = ("op", "principal", "secret_name", "actor", "outcome", "detail")
    wanted = {k: v for k, v in zip(keys, expected, strict=True) if v is not None}
    assert a.rows() == [{"id": 1, **wanted, "created_at": "2026-11-27T10:00:00Z"}]


def test_one_record_per_name_for_a_delivery_and_an_import(new_audit):
    a = new_audit()
    a.apply(SecretsDelivered(principal="mailer", names=["a", "b"], job_id="j1", at=AT),
            VaultImported(names=["x", "y"], actor=CLI, at=AT))
    assert [(r["id"], r["op"], r.get("principal"), r["secret_name"], r.get("detail")) for r in a.rows()] == [
        (2, "import", None, "y", None), (2, "import", None, "x", None),
        (1, "deliver", "mailer", "b", "job_id=j1"), (1, "deliver", "mailer", "a", "job_id=j1"),
    ]


def test_a_reencryption_step_is_not_audited(new_audit):
    a = new_audit()
    a.apply(VaultReencrypted(step="bridge", actor=CLI, at=AT, blob_sha256="b" * 64))
    assert a.rows() == []


def history(new_audit: Callable[[], Audit]) -> Audit:
    """``smtp`` granted to mailer then ungranted; ``hook`` granted to mailer, which is then purged;
    ``other`` never granted to mailer; ``adopted`` granted to mailer only in an adopted blob."""
    a = new_audit()
    set_ = lambda name, grants, created=True: SecretSet(name=name, created=created, grants=grants,  # noqa: E731
                                                        pattern=SecretPattern.MANUAL, actor=ADMIN, at=AT)
    a.apply(
        PrincipalRegistered(name="mailer", kind=PrincipalKind.PLUGIN, actor=ADMIN, at=AT),  # 1
        set_("smtp", []),  # 2: before the grant, still a row about a secret once granted to mailer
        set_("smtp", ["mailer"], created=False),  # 3
        set_("smtp", [], created=False),  # 4
        set_("hook", ["mailer", "relay"]),  # 5
        set_("other", ["relay"]),  # 6
        PrincipalPurged(name="mailer", grants_removed=["hook"], actor=ADMIN, at=AT),  # 7
        SecretRolled(name="hook", roll_count=1, actor=ADMIN, at=AT),  # 8
        SecretsDelivered(principal="relay", names=["other", "hook"], job_id="j1", at=AT),  # 9
        VaultAdopted(initial=False, actor=CLI, at=AT, meta=VaultMeta(
            secrets={"adopted": SecretMeta(grants=["mailer"])},
            principals={"mailer": PrincipalMeta(kind=PrincipalKind.PLUGIN)})),  # 10
        SecretRead(name="adopted", outcome=AuditOutcome.OK, at=AT),  # 11
    )
    return a


def ids(rows: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(r["id"], r.get("secret_name") or r.get("principal")) for r in rows]


def test_principal_filter_adds_rows_about_any_secret_ever_granted_to_it(new_audit):
    assert ids(history(new_audit).rows(principal="mailer")) == [
        (11, "adopted"), (9, "hook"), (8, "hook"), (7, "mailer"), (5, "hook"), (4, "smtp"), (3, "smtp"),
        (2, "smtp"), (1, "mailer"),
    ]


def test_secret_filter_and_both_filters(new_audit):
    a = history(new_audit)
    assert ids(a.rows(secret="hook")) == [(9, "hook"), (8, "hook"), (5, "hook")]
    assert ids(a.rows(secret="other")) == [(9, "other"), (6, "other")]
    assert ids(a.rows(principal="mailer", secret="other")) == []
    assert ids(a.rows(principal="relay", secret="other")) == [(9, "other"), (6, "other")]


def test_newest_first_and_limit(new_audit):
    a = history(new_audit)
    assert [r["id"] for r in a.rows(limit=3)] == [11, 10, 9]
    assert len(a.rows()) == len(a.rows(limit=1000)) == 12  # the delivery is two records


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit):
    with pytest.raises(ValueError, match=r"^--limit must be > 0$"):
        audit.AuditQuery(limit=limit)


def test_the_json_page_omits_empty_fields_and_absent_filters(new_audit):
    a = new_audit()
    a.apply(SecretRevoked(name="smtp", actor=ADMIN, at=AT))
    page = audit.query(a.cur, audit.AuditQuery(secret="smtp"))
    assert msgspec.json.encode(page) == (
        b'{"secret":"smtp","rows":[{"id":1,"op":"revoke","secret_name":"smtp","actor":"core-admin-token",'
        b'"outcome":"ok","created_at":"2026-11-27T10:00:00Z"}]}'
    )


def test_async_readers_read_what_the_sync_readers_read(new_audit, request):
    a = history(new_audit)
    q = audit.AuditQuery(principal="mailer", limit=5)
    if isinstance(a.conn, sqlite3.Connection):
        read = lambda fn: run_read(a.conn, fn)  # noqa: E731
    else:  # the PostgreSQL store's own async reader on the same database
        from ductile.events.postgres_store import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_url"))

        async def on_server(fn):  # type: ignore[no-untyped-def]
            conn = await store.connect_async()
            try:
                return await fn(conn)
            finally:
                await conn.close()

        read = lambda fn: asyncio.run(on_server(fn))  # noqa: E731
    assert read(lambda c: audit.fetch_query(c, q)) == audit.query(a.cur, q)
    assert read(vault.fetch_state) == vault.load_state(a.cur)
    assert read(vault.fetch_counts) == vault.counts(a.cur)


def test_counts_by_status_name_every_status(new_audit):
    a = new_audit()
    a.apply(VaultInitialized(actor=CLI, at=AT), PrincipalRegistered(name="m", kind=PrincipalKind.PLUGIN, actor=ADMIN,
                                                                     at=AT),
            PrincipalRevoked(name="m", actor=ADMIN, at=AT))
    assert vault.counts(a.cur) == vault.VaultCounts(secrets={"active": 1, "revoked": 0},
                                                    principals={"active": 1, "revoked": 1})


def test_the_blob_hashes_follow_the_last_stamped_change(new_audit):
    a = new_audit()
    assert vault.load_state(a.cur).last_change == ""  # no vault event yet: "not adopted"
    a.apply(VaultInitialized(actor=CLI, at=AT, blob_sha256="1" * 64))
    a.apply(SecretRevoked(name="x", actor=ADMIN, at=AT, blob_sha256="2" * 64, prev_blob_sha256="1" * 64))
    a.apply(VaultKeyRotated(outcome=AuditOutcome.FAILED, step="stage", actor=CLI, at=AT))  # no blob written
    state = vault.load_state(a.cur)
    assert (state.blob_sha256, state.prev_blob_sha256, state.last_change) == ("2" * 64, "1" * 64, "VaultKeyRotated")


def test_an_adoption_replaces_the_metadata_with_the_blob(new_audit):
    a = new_audit()
    a.apply(VaultInitialized(actor=CLI, at=AT), PrincipalRegistered(name="m", kind=PrincipalKind.PLUGIN, actor=ADMIN,
                                                                     at=AT))
    meta = metadata_of(VaultDocument())
    a.apply(VaultAdopted(initial=False, meta=meta, actor=CLI, at=AT))
    assert vault.load_state(a.cur).meta == meta
