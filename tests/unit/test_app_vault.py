"""The vault use cases (app/vault.py) against a real EventLog in a temp dir: the §3 write order, an
aborted write rolled back in memory and in the log, the external-modification refusal, one write
at a time, the boot check's outcomes, ``get``'s read record, and rotate-key's events."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ductile.app.vault import MISMATCH_REFUSAL, VaultKeeper, VaultMismatch, VaultReadRefused, init_vault
from ductile.commands.errors import VaultExists, VaultRefused
from ductile.commands.vault import RegisterPrincipal, RevokeSecret
from ductile.events.log import EventLog, read_rows, read_stream
from ductile.events.types import VAULT_AUDIT_STREAM, VAULT_STREAM, SecretRead, SecretSet, VaultWriteAborted
from ductile.projections import vault as vault_projection
from ductile.projections.audit import AuditQuery
from ductile.projections.audit import query as audit_query
from ductile.projections.registry import default_runner
from ductile.vault import files
from ductile.vault.blob import BlobFile, BlobModifiedExternally, BlobWriteFailed, disk_sha256
from ductile.vault.keys import generate_identity, load_keyring, write_key_file
from ductile.vocabulary import AuditOutcome, PrincipalKind, VaultActor, VaultAgreement

CANARY = f"CANARY-{uuid.uuid4()}"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    events = EventLog(tmp_path / "state.db", "full", default_runner()).open_sync()
    yield events
    events.close()


@pytest.fixture
def keyring(tmp_path: Path):  # -> Keyring
    write_key_file(tmp_path / "age.key", generate_identity(), "test")
    return load_keyring(tmp_path / "age.key")


def _counter() -> object:
    n = iter(range(10**6))
    return lambda: f"minted-{next(n):036d}"


@pytest.fixture
def keeper(tmp_path: Path, keyring, log: EventLog) -> VaultKeeper:
    kept, _ = init_vault(tmp_path / "vault.age", keyring, log, mint=_counter())
    return kept


def _state(log: EventLog) -> vault_projection.VaultState:
    return vault_projection.load_state(log.reader().cursor())


def _vault_events(log: EventLog) -> list[object]:
    return [r.event for r in read_stream(log.reader(), VAULT_STREAM)]


def test_init_prints_a_token_once_and_logs_the_blob_it_wrote(tmp_path: Path, keyring, log: EventLog) -> None:
    _keeper, token = init_vault(tmp_path / "vault.age", keyring, log)
    assert len(token) == 43
    state = _state(log)
    assert state.last_change == "VaultInitialized"
    assert state.blob_sha256 == disk_sha256(tmp_path / "vault.age")
    assert (tmp_path / "vault.age").stat().st_mode & 0o777 == 0o600
    assert token not in (tmp_path / "state.db").read_bytes().decode("latin-1")


def test_init_refuses_an_existing_vault_and_leaves_it_untouched(keeper: VaultKeeper, keyring, log: EventLog) -> None:
    before = keeper.blob.path.read_bytes()
    with pytest.raises(VaultExists, match=r'vault: refusing to init — ".*vault.age" already exists'):
        init_vault(keeper.blob.path, keyring, log)
    assert keeper.blob.path.read_bytes() == before


def test_a_change_commits_its_event_before_the_blob_is_written(keeper: VaultKeeper, log: EventLog,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    keeper.apply(RegisterPrincipal(name="mailer"))
    seen: list[str] = []
    real_replace = files.replace

    def spying_replace(path: Path, data: bytes, **kw: object) -> None:
        seen.append(_state(log).last_change)  # what the log holds when the blob is written
        real_replace(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "replace", spying_replace)
    keeper.set("smtp_pw", value=CANARY, grants=["mailer"])
    assert seen == ["SecretSet"]
    assert _state(log).blob_sha256 == disk_sha256(keeper.blob.path)
    assert keeper.document().secrets["smtp_pw"].value == CANARY  # type: ignore[union-attr]
    assert VaultKeeper.load(keeper.blob.path, keeper.keyring, None).document() == keeper.document()


def test_a_failed_blob_write_appends_write_aborted_and_rolls_memory_back(keeper: VaultKeeper, log: EventLog,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    before_blob = keeper.blob.path.read_bytes()
    before_doc = keeper.document()

    def full_disk(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "replace", full_disk)
    with pytest.raises(BlobWriteFailed, match="No space left on device"):
        keeper.set("smtp_pw", value=CANARY)
    assert keeper.blob.path.read_bytes() == before_blob
    assert keeper.document() == before_doc
    kinds = [type(e).__name__ for e in _vault_events(log)]
    assert kinds[-2:] == ["SecretSet", "VaultWriteAborted"]
    aborted = _vault_events(log)[-1]
    assert isinstance(aborted, VaultWriteAborted) and aborted.aborted == "SecretSet"
    state = _state(log)
    assert "smtp_pw" not in state.meta.secrets
    assert state.blob_sha256 == disk_sha256(keeper.blob.path)
    monkeypatch.undo()
    keeper.set("smtp_pw", value=CANARY)  # the next write works: memory and disk agree again
    assert keeper.document().secrets["smtp_pw"].value == CANARY  # type: ignore[union-attr]


def test_a_blob_changed_underneath_refuses_the_write_and_logs_nothing(keeper: VaultKeeper, log: EventLog) -> None:
    head = log.head
    keeper.blob.path.write_bytes(keeper.blob.path.read_bytes() + b"\n")
    with pytest.raises(BlobModifiedExternally, match=r"^vault: blob was modified externally$"):
        keeper.set("smtp_pw", value=CANARY)
    assert log.head == head
    assert "smtp_pw" not in keeper.document().secrets  # type: ignore[union-attr]


def test_a_refused_command_writes_nothing_and_never_quotes_the_value(keeper: VaultKeeper, log: EventLog) -> None:
    head, blob = log.head, keeper.blob.path.read_bytes()
    with pytest.raises(VaultRefused) as info:
        keeper.set("smtp_pw", value=CANARY, pattern="auto")
    assert str(info.value) == "vault: auto secrets are minted by the daemon; omit the value"
    assert CANARY not in repr(info.value)
    assert (log.head, keeper.blob.path.read_bytes()) == (head, blob)


def test_writes_are_serialised_so_none_is_lost(keeper: VaultKeeper, log: EventLog) -> None:
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            keeper.set(f"s{i}", value=f"{CANARY}-{i}")
        except BaseException as exc:  # collected: the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    on_disk = VaultKeeper.load(keeper.blob.path, keeper.keyring, None).document()
    assert {f"s{i}" for i in range(8)} <= set(on_disk.secrets)  # type: ignore[union-attr]
    assert sum(isinstance(e, SecretSet) for e in _vault_events(log)) == 8
    assert _state(log).blob_sha256 == disk_sha256(keeper.blob.path)


def test_get_commits_its_read_record_before_returning_the_value(keeper: VaultKeeper, log: EventLog) -> None:
    keeper.set("smtp_pw", value=CANARY)
    assert keeper.read_secret("smtp_pw") == CANARY
    reads = [r.event for r in read_stream(log.reader(), VAULT_AUDIT_STREAM)]
    assert reads == [SecretRead(name="smtp_pw", outcome=AuditOutcome.OK, at=reads[0].at)]  # type: ignore[union-attr]
    page = audit_query(log.reader().cursor(), AuditQuery(secret="smtp_pw"))
    assert page.rows[0].op == "read"


@pytest.mark.parametrize(("prepare", "name", "text"), [
    (lambda k: None, "core-admin-token",
     "secret \"core-admin-token\" is reserved (the management-API credential) and is never printed by 'vault get'"),
    (lambda k: None, "nope", 'unknown secret "nope"'),
    (lambda k: (k.set("gone", value=CANARY), k.apply(RevokeSecret(name="gone"))),
     "gone", 'secret "gone" is revoked (value cleared)'),
])
def test_get_refuses_with_the_spec_text(keeper: VaultKeeper, prepare, name: str, text: str) -> None:
    prepare(keeper)
    with pytest.raises(VaultReadRefused) as info:
        keeper.read_secret(name)
    assert str(info.value) == text


def test_boot_check_agrees_with_the_log_it_wrote(keeper: VaultKeeper, log: EventLog) -> None:
    head = log.head
    fresh = VaultKeeper.load(keeper.blob.path, keeper.keyring, log)
    assert fresh.settle_boot() == VaultAgreement.AGREE
    assert log.head == head


def test_boot_check_adopts_a_blob_the_log_never_saw(tmp_path: Path, keyring) -> None:
    init_vault(tmp_path / "vault.age", keyring, None)  # no state DB yet
    events = EventLog(tmp_path / "state.db", "full", default_runner()).open_sync()
    try:
        keeper = VaultKeeper.load(tmp_path / "vault.age", keyring, events)
        assert keeper.settle_boot() == VaultAgreement.NOT_ADOPTED
        state = _state(events)
        assert state.last_change == "VaultAdopted"
        assert set(state.meta.principals) == {"core"}
        assert keeper.settle_boot() == VaultAgreement.AGREE
        assert audit_query(events.reader().cursor(), AuditQuery()).rows[0].op == "adopt"
    finally:
        events.close()


def test_boot_check_reverts_a_write_that_never_landed(keeper: VaultKeeper, log: EventLog,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: object, **__: object) -> None:
        raise SystemExit("killed between the commit and the rename")

    monkeypatch.setattr(files, "replace", crash)  # a crash, not an OSError: no abort is appended
    with pytest.raises(SystemExit):
        keeper.set("smtp_pw", value=CANARY)
    monkeypatch.undo()
    assert _state(log).last_change == "SecretSet"
    rebooted = VaultKeeper.load(keeper.blob.path, keeper.keyring, log)
    assert rebooted.settle_boot() == VaultAgreement.UNLANDED_WRITE
    state = _state(log)
    assert state.last_change == "VaultWriteAborted" and "smtp_pw" not in state.meta.secrets
    assert audit_query(log.reader().cursor(), AuditQuery()).rows[0].outcome == AuditOutcome.ABORTED


def test_boot_check_refuses_a_foreign_blob_and_adopt_accepts_it(tmp_path: Path, keeper: VaultKeeper,
                                                                log: EventLog) -> None:
    other, _ = init_vault(tmp_path / "other.age", keeper.keyring, None)
    other.apply(RegisterPrincipal(name="stranger"))
    keeper.blob.path.write_bytes((tmp_path / "other.age").read_bytes())
    foreign = VaultKeeper.load(keeper.blob.path, keeper.keyring, log)
    with pytest.raises(VaultMismatch) as info:
        foreign.settle_boot()
    assert str(info.value) == MISMATCH_REFUSAL
    foreign.adopt(initial=False, actor=VaultActor.CLI)
    assert foreign.settle_boot() == VaultAgreement.AGREE
    assert _state(log).meta.principals["stranger"].kind == PrincipalKind.PLUGIN


def test_rotate_key_logs_each_blob_write_before_it_and_ends_agreeing(keeper: VaultKeeper, log: EventLog) -> None:
    old_public = keeper.keyring.recipients[0]
    result = keeper.rotate_key()
    kinds = [type(e).__name__ for e in _vault_events(log)]
    assert kinds[-3:] == ["VaultReencrypted", "VaultReencrypted", "VaultKeyRotated"]
    assert _state(log).blob_sha256 == disk_sha256(keeper.blob.path)
    new_ring = load_keyring(keeper.keyring.path)
    assert new_ring.recipients == (result.recipient,) != (old_public,)
    assert BlobFile(keeper.blob.path).read(new_ring.identities) is not None
    rows = audit_query(log.reader().cursor(), AuditQuery()).rows
    assert (rows[0].op, rows[0].detail) == ("rotate-key", f"recipient={result.recipient}")
    assert all(r.event is not None for r in read_rows(log.reader()))
