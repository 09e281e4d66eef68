"""Property: random vault commands through the real log; three readings of the vault agree.

Each command runs as the use case will: decide on the in-memory document, stamp the events with the
new blob's hash, append them to the ``vault`` stream in one unit of work (a refusal leaves nothing).
Some steps are audit-only facts, an aborted write (back to the previous document) or an adoption.
Then the vault projection equals the fold of the stream through the decider's ``evolve``, and both
equal the metadata of the final document; the async reader reads the same; a rebuild reproduces the
vault and audit tables; and ``--principal`` finds exactly the rows a plain reading of §12 finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ductile.commands import vault as v
from ductile.commands.errors import Refused
from ductile.events import log as log_module
from ductile.events.log import WriteTx, read_rows, read_stream
from ductile.events.types import (
    VAULT_AUDIT_STREAM,
    VAULT_STREAM,
    SecretDenied,
    SecretRead,
    SecretsDelivered,
    SecretSet,
    VaultAdopted,
    VaultWriteAborted,
)
from ductile.projections import audit, vault
from ductile.projections.registry import default_runner
from ductile.vault.document import ADMIN_TOKEN, CORE, VaultDocument, marshal
from ductile.vocabulary import AuditOutcome, SecretDenialReason, VaultActor
from tests.stores import FreshStore

from .state_db import assert_rebuild_reproduces, fresh_log

NS = 1_000_000_000
T0 = 1_795_770_000 * NS
SECRETS = ["s1", "s2", "s-3", ADMIN_TOKEN, "Bad"]
PRINCIPALS = ["p1", "p2", CORE, "bad_x"]
TABLES = [*vault.PROJECTION.tables, *audit.PROJECTION.tables]

# Weighted towards commands that are accepted, so that most plans change the vault many times.
secret = st.sampled_from(["s1", "s1", "s2", "s2", "s-3", ADMIN_TOKEN, "Bad"])
principal = st.sampled_from(["p1", "p1", "p2", "p2", CORE, "bad_x"])
value = st.sampled_from(["", "v1", "v2", "v2", "v3", "v3"])
grants = st.none() | st.lists(principal, max_size=3)

vault_commands = st.one_of(
    st.builds(v.SetSecret, name=secret, value=value, pattern=st.sampled_from(["", "", "manual", "auto", "auto", "bogus"]),
              grants=grants),
    st.builds(v.SetSecret, name=secret, value=value, grants=grants),
    st.builds(v.RollSecret, name=secret, value=value),
    st.builds(v.RevokeSecret, name=secret),
    st.builds(v.RegisterPrincipal, name=principal, kind=st.sampled_from(["", "plugin", "consumer", "gateway", "x"])),
    st.builds(v.RegisterPrincipal, name=principal),
    st.builds(v.RevokePrincipal, name=principal),
    st.builds(v.PurgePrincipal, name=principal),
    st.builds(v.RollPrincipal, name=principal),
    st.builds(v.RotateAdminToken),
    st.builds(v.ImportSecrets, entries=st.lists(st.tuples(secret, value), max_size=2)),
)
other_steps = st.tuples(st.sampled_from(["read", "deliver", "deny", "abort", "adopt"]), secret, principal)
steps = st.lists(st.one_of(vault_commands, vault_commands, vault_commands, other_steps), min_size=8, max_size=40)
REGISTER_BOTH = [v.RegisterPrincipal(name="p1"), v.RegisterPrincipal(name="p2", kind="consumer")]


def sha(doc: VaultDocument) -> str:
    return hashlib.sha256(marshal(doc)).hexdigest()


class Vault:
    """The test's stand-in for the use case: the document in memory and the last blob's hash."""

    def __init__(self) -> None:
        counter = itertools.count()
        self.mint = lambda: f"minted-{next(counter):036d}"
        self.doc: VaultDocument | None = None
        self.blob = ""
        self.previous: tuple[VaultDocument, str] | None = None  # what an aborted write goes back to

    def change(self, cmd: Any):
        def work(tx: WriteTx) -> None:
            d = v.decide(cmd, self.doc, tx.now, self.mint)
            if not d.events:
                return
            new_blob = sha(d.document)
            tx.append(VAULT_STREAM, v.stamp(d.events, new_blob, self.blob))
            # Only once committed: a refused unit leaves the vault as it was.
            self.previous = (self.doc, self.blob) if self.doc is not None else None
            self.doc, self.blob = d.document, new_blob

        return work

    def other(self, kind: str, name: str, who: str):
        def work(tx: WriteTx) -> None:
            if kind == "read":
                tx.append(VAULT_AUDIT_STREAM, [SecretRead(name=name, outcome=AuditOutcome.OK, at=tx.now)])
            elif kind == "deliver":
                tx.append(VAULT_AUDIT_STREAM, [SecretsDelivered(principal=who, names=[name, "s2"], job_id="j1",
                                                                at=tx.now)])
            elif kind == "deny":
                tx.append(VAULT_AUDIT_STREAM, [SecretDenied(principal=who, name=name, job_id="j2", at=tx.now,
                                                            reason=SecretDenialReason.SECRET_REVOKED)])
            elif kind == "abort" and self.previous is not None:
                doc, blob = self.previous
                state = vault.load_state(tx.cur)
                tx.append(VAULT_STREAM, v.stamp([v.aborted(state, doc, tx.now)], blob, state.blob_sha256))
                self.doc, self.blob, self.previous = doc, blob, None
            elif kind == "adopt" and self.doc is not None:
                known = vault.load_state(tx.cur).meta
                event = v.adopted(known, self.doc, initial=False, actor=VaultActor.CLI, now=tx.now)
                tx.append(VAULT_STREAM, v.stamp([event], self.blob, self.blob))

        return work


def ever_granted(events: list[Any], who: str) -> set[str]:
    """§12's "is or ever was granted to NAME", read straight off the events."""
    names: set[str] = set()
    for e in events:
        if isinstance(e, SecretSet) and who in e.grants:
            names.add(e.name)
        if isinstance(e, VaultAdopted | VaultWriteAborted):
            names |= {n for n, s in e.meta.secrets.items() if who in s.grants}
    return names


async def scenario(plan: list[Any], fresh_store: FreshStore) -> None:
    clock = [T0]
    subject = Vault()
    with mock.patch.object(log_module, "now_ns", lambda: clock[0]):
        async with fresh_log("normal", default_runner(), store=fresh_store) as log:
            await log.submit(subject.change(v.InitVault(vault_path="/v")))
            for step in [*REGISTER_BOTH, *plan]:
                clock[0] += 700_000_000  # sometimes the same whole second, sometimes the next
                work = subject.other(*step) if isinstance(step, tuple) else subject.change(step)
                with contextlib.suppress(Refused):  # a refusal is a step too: it must leave nothing
                    await log.submit(work)
            conn = log.reader()
            try:
                stream = [r.event for r in read_stream(conn, VAULT_STREAM)]
                event(f"changes: {min(len(stream) // 5 * 5, 20)}+")
                event(f"audit rows: {min(len(audit.query(conn.cursor(), audit.AuditQuery(limit=9999)).rows) // 10 * 10, 30)}+")
                state = vault.load_state(conn.cursor())
                assert state == v.fold(stream)
                assert subject.doc is not None
                assert state.meta == v.metadata_of(subject.doc)
                assert state.blob_sha256 == subject.blob
                everything = [r for r in read_rows(conn)]
                for who in PRINCIPALS:
                    page = audit.query(conn.cursor(), audit.AuditQuery(principal=who, limit=10_000))
                    granted = ever_granted([r.event for r in everything], who)
                    expected = [row for row in audit.query(conn.cursor(), audit.AuditQuery(limit=10_000)).rows
                                if row.principal == who or row.secret_name in granted]
                    assert page.rows == expected
            finally:
                conn.close()
            stored = log.store
            aconn = await stored.connect_async()
            try:
                assert await vault.fetch_state(aconn) == state
            finally:
                await aconn.close()
            await log.aclose()
            assert_rebuild_reproduces(stored, TABLES)


def test_vault_projection_equals_the_fold_equals_the_document(fresh_store):
    @settings(max_examples=fresh_store.examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plan=steps)
    def run(plan) -> None:
        asyncio.run(scenario(plan, fresh_store))

    run()
