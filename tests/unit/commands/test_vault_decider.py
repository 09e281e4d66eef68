"""The vault decider (vault.md §5): every check in its order with its exact text, every effect."""

from __future__ import annotations

import itertools
import uuid

import msgspec
import pytest
from hypothesis.vendor.pretty import pretty
from rich.pretty import pretty_repr

from ductile.commands import vault as v
from ductile.commands.errors import VaultExists, VaultRefused
from ductile.events import codec
from ductile.events.timefmt import parse_rfc3339
from ductile.events.types import (
    AdminTokenRotated,
    PrincipalPurged,
    PrincipalRolled,
    SecretRevoked,
    SecretRolled,
    SecretSet,
    VaultImported,
    VaultInitialized,
)
from ductile.projections.vault import VaultState
from ductile.vault.document import ADMIN_TOKEN, CORE, Principal, Secret, VaultDocument
from ductile.vocabulary import (
    PrincipalKind,
    PrincipalStatus,
    SecretPattern,
    SecretStatus,
    VaultActor,
    VaultAgreement,
)

NS = 1_000_000_000
T0_TEXT = "2026-11-27T10:00:00Z"
T0 = parse_rfc3339(T0_TEXT) + 123_456_789  # with a fraction the document must drop
LATER = T0 + 3600 * NS
LATER_TEXT = "2026-11-27T11:00:00Z"

INVALID_NAME = "vault: invalid name"
INVALID_KIND = "vault: invalid principal kind"
INVALID_PATTERN = "vault: invalid secret pattern"
RESERVED = "vault: reserved entity cannot be mutated via the data plane"
UNKNOWN_PRINCIPAL = "vault: unknown principal"
UNKNOWN_SECRET = "vault: unknown secret"
EMPTY = "vault: active secret value must not be empty"
AUTO_VALUE = "vault: auto secrets are minted by the daemon; omit the value"
REVOKED = "vault: secret is revoked"
IMMUTABLE = "vault: secret value is immutable via set; use roll"
TOO_LARGE = "vault: secret value exceeds 65536 bytes"
EXISTS = "vault: principal already registered"


def minter():
    counter = itertools.count()
    return lambda: f"minted-{next(counter):036d}"  # 43 characters, like a real mint


def base() -> VaultDocument:
    """core, an active plugin ``mailer``, a revoked ``old``; a manual, an auto and a revoked secret."""
    return VaultDocument(
        principals={
            CORE: Principal(kind=PrincipalKind.GATEWAY, nonce="n" * 43),
            "mailer": Principal(kind=PrincipalKind.PLUGIN),
            "old": Principal(kind=PrincipalKind.CONSUMER, status=PrincipalStatus.REVOKED),
        },
        secrets={
            ADMIN_TOKEN: Secret(value="t" * 43, pattern=SecretPattern.AUTO, created_at=T0_TEXT, updated_at=T0_TEXT),
            "smtp": Secret(value="v1", authorized_principals=("mailer", "old"), created_at=T0_TEXT,
                           updated_at=T0_TEXT),
            "tok": Secret(value="a" * 43, authorized_principals=("mailer",), pattern=SecretPattern.AUTO,
                          roll_count=2, created_at=T0_TEXT, updated_at=T0_TEXT),
            "gone": Secret(status=SecretStatus.REVOKED, authorized_principals=("mailer",), created_at=T0_TEXT,
                           updated_at=T0_TEXT, revoked_at=T0_TEXT),
        },
    )


def decide(cmd: v.Command, doc: VaultDocument | None = None, now: int = LATER) -> v.Decision:
    return v.decide(cmd, base() if doc is None else doc, now, minter())


# (case, command, the refusal) — each row of §5's "Checks, in order" column, and pairs of faults
# that show which check comes first.
REFUSALS = [
    ("set: bad name", v.SetSecret(name="Bad Name", value="x"), INVALID_NAME),
    ("set: trailing dash", v.SetSecret(name="smtp-", value="x"), INVALID_NAME),
    ("set: reserved", v.SetSecret(name=ADMIN_TOKEN, value="x"), RESERVED),
    ("set: bad pattern", v.SetSecret(name="new", value="x", pattern="weird"), INVALID_PATTERN),
    ("set: name before pattern", v.SetSecret(name="BAD", pattern="weird"), INVALID_NAME),
    ("set: reserved before pattern", v.SetSecret(name=ADMIN_TOKEN, pattern="weird"), RESERVED),
    ("set: unknown grantee", v.SetSecret(name="new", value="x", grants=["nobody"]), UNKNOWN_PRINCIPAL),
    ("set: pattern before grantee", v.SetSecret(name="new", pattern="x", grants=["nobody"]), INVALID_PATTERN),
    ("set: manual empty", v.SetSecret(name="new", value=""), EMPTY),
    ("set: explicit manual empty", v.SetSecret(name="new", pattern="manual"), EMPTY),
    ("set: grantee before empty", v.SetSecret(name="new", grants=["nobody"]), UNKNOWN_PRINCIPAL),
    ("set: auto with value", v.SetSecret(name="new", value="x", pattern="auto"), AUTO_VALUE),
    ("set: too large", v.SetSecret(name="new", value="x" * 65537), TOO_LARGE),
    ("set: too large in UTF-8 bytes", v.SetSecret(name="new", value="é" * 32769), TOO_LARGE),
    ("update: revoked", v.SetSecret(name="gone", value="x"), REVOKED),
    ("update: empty before revoked", v.SetSecret(name="gone"), EMPTY),
    ("update: different value", v.SetSecret(name="smtp", value="v2"), IMMUTABLE),
    ("update: grantee before immutable", v.SetSecret(name="smtp", value="v2", grants=["nobody"]), UNKNOWN_PRINCIPAL),
    ("update: auto with value", v.SetSecret(name="tok", value="a" * 43), AUTO_VALUE),
    ("update: manual empty", v.SetSecret(name="smtp", grants=[]), EMPTY),
    ("roll: reserved", v.RollSecret(name=ADMIN_TOKEN), RESERVED),
    ("roll: unknown", v.RollSecret(name="nope", value="x"), UNKNOWN_SECRET),
    ("roll: unknown, not a name", v.RollSecret(name="Bad Name", value="x"), UNKNOWN_SECRET),
    ("roll: revoked", v.RollSecret(name="gone", value="x"), REVOKED),
    ("roll: revoked before empty", v.RollSecret(name="gone"), REVOKED),
    ("roll: manual empty", v.RollSecret(name="smtp"), EMPTY),
    ("roll: auto with value", v.RollSecret(name="tok", value="x"), AUTO_VALUE),
    ("roll: too large", v.RollSecret(name="smtp", value="x" * 65537), TOO_LARGE),
    ("revoke: reserved", v.RevokeSecret(name=ADMIN_TOKEN), RESERVED),
    ("revoke: unknown", v.RevokeSecret(name="nope"), UNKNOWN_SECRET),
    ("register: core", v.RegisterPrincipal(name=CORE), RESERVED),
    ("register: core, bad kind", v.RegisterPrincipal(name=CORE, kind="robot"), RESERVED),
    ("register: bad name", v.RegisterPrincipal(name="has_underscore"), INVALID_NAME),
    ("register: name before kind", v.RegisterPrincipal(name="Bad", kind="robot"), INVALID_NAME),
    ("register: bad kind", v.RegisterPrincipal(name="new", kind="robot"), INVALID_KIND),
    ("register: kind before exists", v.RegisterPrincipal(name="mailer", kind="robot"), INVALID_KIND),
    ("register: exists", v.RegisterPrincipal(name="mailer"), EXISTS),
    ("register: exists, revoked", v.RegisterPrincipal(name="old", kind="consumer"), EXISTS),
    ("revoke-principal: core", v.RevokePrincipal(name=CORE), RESERVED),
    ("revoke-principal: unknown", v.RevokePrincipal(name="nope"), UNKNOWN_PRINCIPAL),
    ("purge-principal: core", v.PurgePrincipal(name=CORE), RESERVED),
    ("purge-principal: unknown", v.PurgePrincipal(name="nope"), UNKNOWN_PRINCIPAL),
    ("roll-principal: unknown", v.RollPrincipal(name="nope"), UNKNOWN_PRINCIPAL),
    ("import: bad name", v.ImportSecrets(entries=[("ok", "x"), ("Bad", "y")]), INVALID_NAME),
    ("import: reserved", v.ImportSecrets(entries=[(ADMIN_TOKEN, "y")]), RESERVED),
    ("import: different value", v.ImportSecrets(entries=[("smtp", "other")]), IMMUTABLE),
    ("import: same name twice, two values", v.ImportSecrets(entries=[("n", "a"), ("n", "b")]), IMMUTABLE),
    ("import: revoked name", v.ImportSecrets(entries=[("gone", "x")]), REVOKED),
    ("import: empty", v.ImportSecrets(entries=[("n", "")]), EMPTY),
]


@pytest.mark.parametrize(("cmd", "text"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_each_check_refuses_with_the_spec_text_in_the_spec_order(cmd, text):
    with pytest.raises(VaultRefused) as refused:
        decide(cmd)
    assert str(refused.value) == text


def test_init_over_an_existing_vault_names_the_path():
    with pytest.raises(VaultExists) as refused:
        decide(v.InitVault(vault_path="/etc/ductile/vault.age"))
    assert str(refused.value) == 'vault: refusing to init — "/etc/ductile/vault.age" already exists'


def test_init_seeds_core_with_a_nonce_and_the_admin_token():
    d = v.decide(v.InitVault(vault_path="/x"), None, T0, minter())
    core = d.document.principals[CORE]
    token = d.document.secrets[ADMIN_TOKEN]
    assert (core.kind, core.status, len(core.nonce)) == (PrincipalKind.GATEWAY, PrincipalStatus.ACTIVE, 43)
    assert (token.pattern, token.authorized_principals, len(token.value)) == (SecretPattern.AUTO, (), 43)
    assert token.value != core.nonce
    assert (token.created_at, token.updated_at) == (T0_TEXT, T0_TEXT)
    assert d.events == [VaultInitialized(actor=VaultActor.CLI, at=T0)]


def test_set_creates_a_manual_secret_by_default_with_whole_second_utc_times():
    d = decide(v.SetSecret(name="new_pw", value="hunter2", grants=["mailer", "mailer"]))
    s = d.document.secrets["new_pw"]
    assert (s.value, s.pattern, s.status, s.roll_count) == ("hunter2", SecretPattern.MANUAL, SecretStatus.ACTIVE, 0)
    assert s.authorized_principals == ("mailer",)
    assert (s.created_at, s.updated_at, s.revoked_at) == (LATER_TEXT, LATER_TEXT, "")
    assert d.events == [SecretSet(name="new_pw", created=True, pattern=SecretPattern.MANUAL, grants=["mailer"],
                                  actor=VaultActor.ADMIN_TOKEN, at=LATER)]


def test_set_auto_mints_the_value_at_creation():
    d = decide(v.SetSecret(name="hook", pattern="auto"))
    assert d.document.secrets["hook"].value == "minted-" + "0" * 36
    assert d.events[0].pattern == SecretPattern.AUTO


@pytest.mark.parametrize(
    ("grants", "expected"),
    [(None, ("mailer", "old")), ([], ()), (["old"], ("old",)), (["core", "mailer"], ("core", "mailer"))],
    ids=["omitted keeps", "empty clears", "list replaces", "list replaces in order"],
)
def test_set_update_grants(grants, expected):
    d = decide(v.SetSecret(name="smtp", value="v1", grants=grants))
    s = d.document.secrets["smtp"]
    assert s.authorized_principals == expected
    assert (s.value, s.pattern, s.created_at) == ("v1", SecretPattern.MANUAL, T0_TEXT)
    if expected != ("mailer", "old"):
        assert s.updated_at == LATER_TEXT
        assert d.events == [SecretSet(name="smtp", created=False, pattern=SecretPattern.MANUAL, grants=list(expected),
                                      actor=VaultActor.ADMIN_TOKEN, at=LATER)]


def test_set_update_that_changes_nothing_appends_nothing():
    d = decide(v.SetSecret(name="smtp", value="v1"))
    assert d.events == [] and d.document == base()


def test_set_update_of_an_auto_secret_keeps_its_pattern_and_value():
    d = decide(v.SetSecret(name="tok", grants=[]))
    s = d.document.secrets["tok"]
    assert (s.pattern, s.value, s.authorized_principals) == (SecretPattern.AUTO, "a" * 43, ())


def test_a_value_of_exactly_65536_bytes_is_accepted():
    d = decide(v.SetSecret(name="big", value="é" * 32768))
    assert len(d.document.secrets["big"].value.encode()) == 65536


def test_roll_manual_takes_the_new_value_and_keeps_the_pattern():
    d = decide(v.RollSecret(name="smtp", value="v2"))
    s = d.document.secrets["smtp"]
    assert (s.value, s.roll_count, s.pattern, s.updated_at) == ("v2", 1, SecretPattern.MANUAL, LATER_TEXT)
    assert d.events == [SecretRolled(name="smtp", roll_count=1, actor=VaultActor.ADMIN_TOKEN, at=LATER)]


def test_roll_auto_mints_and_keeps_the_pattern():
    d = decide(v.RollSecret(name="tok"))
    s = d.document.secrets["tok"]
    assert (s.value, s.roll_count, s.pattern) == ("minted-" + "0" * 36, 3, SecretPattern.AUTO)


def test_revoke_clears_the_value_once_and_keeps_the_first_revoked_at():
    d = decide(v.RevokeSecret(name="smtp"))
    s = d.document.secrets["smtp"]
    assert (s.status, s.value, s.revoked_at) == (SecretStatus.REVOKED, "", LATER_TEXT)
    assert s.authorized_principals == ("mailer", "old")
    assert d.events == [SecretRevoked(name="smtp", actor=VaultActor.ADMIN_TOKEN, at=LATER)]
    again = v.decide(v.RevokeSecret(name="smtp"), d.document, LATER + 60 * NS, minter())
    assert again.events == [] and again.document.secrets["smtp"].revoked_at == LATER_TEXT


def test_a_revoked_name_is_final():
    doc = decide(v.RevokeSecret(name="smtp")).document
    with pytest.raises(VaultRefused, match=r"^vault: secret is revoked$"):
        v.decide(v.SetSecret(name="smtp", value="v1"), doc, LATER, minter())


@pytest.mark.parametrize(("kind", "expected"), [("", PrincipalKind.PLUGIN), ("plugin", PrincipalKind.PLUGIN),
                                                ("consumer", PrincipalKind.CONSUMER), ("gateway", PrincipalKind.GATEWAY)])
def test_register_principal_is_active_with_its_kind(kind, expected):
    d = decide(v.RegisterPrincipal(name="relay-1", kind=kind))
    assert d.document.principals["relay-1"] == Principal(kind=expected)
    assert d.events[0].kind == expected


def test_revoke_principal_keeps_its_grants_and_repeats_as_a_no_op():
    d = decide(v.RevokePrincipal(name="mailer"))
    assert d.document.principals["mailer"].status == PrincipalStatus.REVOKED
    assert d.document.secrets["smtp"].authorized_principals == ("mailer", "old")
    assert v.decide(v.RevokePrincipal(name="mailer"), d.document, LATER, minter()).events == []


def test_purge_principal_strips_its_name_from_every_grant_in_one_event():
    d = decide(v.PurgePrincipal(name="mailer"))
    assert "mailer" not in d.document.principals
    grants = {n: s.authorized_principals for n, s in d.document.secrets.items()}
    assert grants == {ADMIN_TOKEN: (), "smtp": ("old",), "tok": (), "gone": ()}
    assert d.events == [PrincipalPurged(name="mailer", grants_removed=["smtp", "tok", "gone"],
                                        actor=VaultActor.ADMIN_TOKEN, at=LATER)]


def test_roll_principal_rolls_active_auto_grants_and_lists_manual_ones_as_skipped():
    doc = decide(v.SetSecret(name="hook", pattern="auto", grants=["mailer"])).document
    doc = v.decide(v.SetSecret(name="other", pattern="auto"), doc, LATER, minter()).document
    d = v.decide(v.RollPrincipal(name="mailer"), doc, LATER + NS, minter())
    assert (d.rolled, d.skipped) == (["tok", "hook"], ["smtp"])
    assert d.document.secrets["tok"].roll_count == 3 and d.document.secrets["hook"].roll_count == 1
    assert d.document.secrets["other"] == doc.secrets["other"]  # not granted
    assert d.document.secrets["gone"] == doc.secrets["gone"]  # revoked
    assert d.events == [PrincipalRolled(name="mailer", rolled=["tok", "hook"], skipped=["smtp"],
                                        actor=VaultActor.ADMIN_TOKEN, at=LATER + NS)]


def test_roll_principal_with_nothing_to_roll_appends_nothing():
    d = decide(v.RollPrincipal(name="old"))
    assert (d.events, d.rolled, d.skipped, d.document) == ([], [], ["smtp"], base())


def test_rotate_admin_token_mints_a_new_token():
    d = decide(v.RotateAdminToken())
    token = d.document.secrets[ADMIN_TOKEN]
    assert (token.value, token.roll_count, token.updated_at) == ("minted-" + "0" * 36, 1, LATER_TEXT)
    assert d.events == [AdminTokenRotated(roll_count=1, actor=VaultActor.CLI, at=LATER)]


def test_import_adds_manual_secrets_without_grants_and_skips_identical_ones():
    d = decide(v.ImportSecrets(entries=[("smtp", "v1"), ("legacy", "L"), ("legacy", "L")]))
    assert d.document.secrets["legacy"] == Secret(value="L", created_at=LATER_TEXT, updated_at=LATER_TEXT)
    assert d.events == [VaultImported(names=["legacy"], actor=VaultActor.CLI, at=LATER)]
    assert decide(v.ImportSecrets(entries=[("smtp", "v1")])).events == []


def test_stamp_puts_the_blob_hashes_on_the_events():
    events = decide(v.RollSecret(name="smtp", value="v2")).events
    (stamped,) = v.stamp(events, "b" * 64, "a" * 64)
    assert (stamped.blob_sha256, stamped.prev_blob_sha256) == ("b" * 64, "a" * 64)
    assert msgspec.structs.replace(stamped, blob_sha256="", prev_blob_sha256="") == events[0]


def test_adopted_lists_the_names_that_differ_from_what_the_log_knew():
    known = v.metadata_of(base())
    on_disk = decide(v.RegisterPrincipal(name="new")).document
    on_disk = v.decide(v.RollSecret(name="smtp", value="v2"), on_disk, LATER, minter()).document
    on_disk = msgspec.structs.replace(on_disk, secrets={n: s for n, s in on_disk.secrets.items() if n != "gone"})
    e = v.adopted(known, on_disk, initial=False, actor=VaultActor.CLI, now=LATER)
    assert (e.added, e.removed, e.changed) == (["principal:new"], ["gone"], ["smtp"])
    assert e.meta == v.metadata_of(on_disk)


def shown(obj: object) -> bytes:
    """Every way a command or a decision gets printed: repr, str, rich, a hypothesis example."""
    return "\n".join([repr(obj), str(obj), pretty_repr(obj), pretty([obj])]).encode()


def test_refusals_and_events_never_carry_a_value():
    canary = f"CANARY-{uuid.uuid4()}"
    other = f"CANARY-{uuid.uuid4()}"
    mint_canary = iter([canary + "-auto"] * 10).__next__
    doc = base()
    produced = []
    for cmd in [v.SetSecret(name="c", value=canary, grants=["mailer"]), v.RollSecret(name="c", value=canary + "2"),
                v.SetSecret(name="a", pattern="auto"), v.RollSecret(name="a"), v.RollPrincipal(name="mailer"),
                v.RotateAdminToken(), v.ImportSecrets(entries=[("imp", canary)])]:
        d = v.decide(cmd, doc, LATER, mint_canary)
        doc = d.document
        produced += [codec.encode(e) for e in d.events] + [shown(d), shown(cmd)]
    for bad in [v.SetSecret(name="c", value=other), v.SetSecret(name="x", value=other, pattern="auto"),
                v.SetSecret(name="x", value=other + "x" * 65536), v.RollSecret(name="a", value=other),
                v.ImportSecrets(entries=[("c", other)]), v.SetSecret(name="Bad", value=other)]:
        with pytest.raises(VaultRefused) as refused:
            v.decide(bad, doc, LATER, mint_canary)
        produced += [str(refused.value).encode(), repr(refused.value).encode(), shown(bad)]
    assert doc.secrets["imp"].value == canary and doc.secrets["a"].value == canary + "-auto"  # the canaries were used
    for blob in produced:
        assert b"CANARY-" not in blob


A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.mark.parametrize(
    ("state", "on_disk", "expected"),
    [
        (VaultState(), A, VaultAgreement.NOT_ADOPTED),
        (VaultState(blob_sha256=B, prev_blob_sha256=A, last_change="SecretSet"), B, VaultAgreement.AGREE),
        (VaultState(blob_sha256=B, prev_blob_sha256=A, last_change="SecretSet"), A, VaultAgreement.UNLANDED_WRITE),
        (VaultState(blob_sha256=B, prev_blob_sha256=A, last_change="SecretSet"), C, VaultAgreement.MISMATCH),
        (VaultState(blob_sha256=A, last_change="VaultInitialized"), C, VaultAgreement.MISMATCH),
    ],
    ids=["no vault event yet", "equal", "equal to prev", "foreign blob", "foreign blob after init"],
)
def test_the_boot_agreement_check(state, on_disk, expected):
    assert v.agreement(state, on_disk) == expected
