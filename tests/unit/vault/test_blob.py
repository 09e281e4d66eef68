"""The vault blob (vault.md §1): armored age, fail-closed reads, the write of §1 with its
external-modification check, 0600 files, no backup, and no value in any message or repr."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pyrage
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.vault import blob as blob_mod
from ductile.vault import files
from ductile.vault.blob import (
    BlobFile,
    BlobModifiedExternally,
    BlobWriteFailed,
    NotAgeData,
    NotAVaultDocument,
    VaultMissing,
    VaultUndecryptable,
    recipient_count,
)
from ductile.vault.document import CORE, Principal, Secret, VaultDocument, parse
from ductile.vocabulary import PrincipalKind

CANARY = f"CANARY-{uuid.uuid4()}"


def _doc(value: str = CANARY, roll_count: int = 0) -> VaultDocument:
    return VaultDocument(
        secrets={"smtp_pw": Secret(value=value, authorized_principals=("mailer",), roll_count=roll_count)},
        principals={
            CORE: Principal(kind=PrincipalKind.GATEWAY, nonce="bm9uY2U"),
            "mailer": Principal(kind=PrincipalKind.PLUGIN),
        },
    )


@pytest.fixture
def key() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


def _written(path: Path, key: pyrage.x25519.Identity, doc: VaultDocument | None = None) -> BlobFile:
    blob = BlobFile(path)
    prepared = blob.prepare(doc or _doc(), [key.to_public()])
    assert prepared is not None
    blob.commit(prepared)
    return blob


def test_a_written_blob_is_armored_0600_and_reads_back_the_same_document(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    _written(path, key)
    raw = path.read_bytes()
    assert raw.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert CANARY.encode() not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert BlobFile(path).read([key]) == _doc()


def test_prepare_knows_the_hash_before_the_file_is_written(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    first = _written(path, key)
    first_hash = blob_mod.disk_sha256(path)
    prepared = first.prepare(_doc(roll_count=1), [key.to_public()])
    assert prepared is not None
    assert prepared.prev_sha256 == first_hash
    assert blob_mod.disk_sha256(path) == first_hash  # nothing written yet: the event goes first
    first.commit(prepared)
    assert blob_mod.disk_sha256(path) == prepared.sha256 == first.sha256


def test_the_first_write_has_no_previous_hash(tmp_path: Path, key) -> None:
    prepared = BlobFile(tmp_path / "vault.age").prepare(_doc(), [key.to_public()])
    assert prepared is not None and prepared.prev_sha256 == ""


def test_an_unchanged_document_is_not_rewritten(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    assert blob.prepare(_doc(), [key.to_public()]) is None
    reader = BlobFile(path)
    assert reader.prepare(reader.read([key]), [key.to_public()]) is None


def test_a_blob_changed_underneath_refuses_the_write_and_writes_nothing(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    _written(tmp_path / "other.age", key, _doc(value="other")).path.replace(path)  # someone else's blob
    foreign = path.read_bytes()
    with pytest.raises(BlobModifiedExternally) as err:
        blob.prepare(_doc(roll_count=5), [key.to_public()])
    assert str(err.value) == "vault: blob was modified externally"
    assert path.read_bytes() == foreign


def test_a_blob_changed_between_prepare_and_commit_is_not_overwritten(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    prepared = blob.prepare(_doc(roll_count=1), [key.to_public()])
    assert prepared is not None
    path.write_bytes(b"tampered")
    with pytest.raises(BlobModifiedExternally):
        blob.commit(prepared)
    assert path.read_bytes() == b"tampered"


def test_a_vault_appearing_where_none_was_expected_is_an_external_modification(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    path.write_bytes(b"someone else's vault")
    with pytest.raises(BlobModifiedExternally):
        BlobFile(path).prepare(_doc(), [key.to_public()])


def test_a_group_readable_blob_is_written_back_0600(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    path.chmod(0o644)
    prepared = blob.prepare(_doc(roll_count=1), [key.to_public()])
    assert prepared is not None
    blob.commit(prepared)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_writes_leave_no_backup_and_no_temp_file(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    for n in range(1, 4):
        prepared = blob.prepare(_doc(roll_count=n), [key.to_public()])
        assert prepared is not None
        blob.commit(prepared)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault.age"]


def test_a_failed_write_leaves_the_old_blob_and_memory_rebuilds_from_it(tmp_path: Path, key, monkeypatch) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    before = path.read_bytes()
    prepared = blob.prepare(_doc(value="new-value", roll_count=1), [key.to_public()])
    assert prepared is not None

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(BlobWriteFailed) as err:
        blob.commit(prepared)
    assert str(err.value) == f"vault: writing {path} failed: No space left on device"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault.age"]  # the temp file is gone
    assert blob.last_written() == _doc()
    assert blob.sha256 == blob_mod.sha256_hex(before)
    monkeypatch.undo()
    again = blob.prepare(_doc(value="new-value", roll_count=1), [key.to_public()])  # retry works
    assert again is not None
    blob.commit(again)
    assert BlobFile(path).read([key]).secrets["smtp_pw"].value == "new-value"


def test_a_crash_hook_before_the_rename_leaves_the_old_blob(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    before = path.read_bytes()
    prepared = blob.prepare(_doc(roll_count=1), [key.to_public()])
    assert prepared is not None

    def crash() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        blob.commit(prepared, before_rename=crash)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault.age"]


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, VaultMissing, "no vault at {path} (run 'ductile vault init')"),
        (b"secrets: {}\n", NotAgeData, "{path} is not age-encrypted"),
        (b"-----BEGIN AGE ENCRYPTED FILE-----\n!!!\n-----END AGE ENCRYPTED FILE-----\n", NotAgeData,
         "{path} is not age-encrypted"),
        (b"", NotAgeData, "{path} is not age-encrypted"),
    ],
    ids=["missing", "plaintext", "bad-armor", "empty"],
)
def test_reads_fail_closed(tmp_path: Path, key, content, error, message) -> None:
    path = tmp_path / "vault.age"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error) as err:
        BlobFile(path).read([key])
    assert str(err.value) == message.format(path=path)


def test_a_blob_for_another_key_does_not_decrypt(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    _written(path, key)
    with pytest.raises(VaultUndecryptable) as err:
        BlobFile(path).read([pyrage.x25519.Identity.generate()])
    assert str(err.value).startswith(f"vault {path} could not be decrypted with the age key (")


@pytest.mark.parametrize("plaintext", [b"just a string\n", b"secrets: [1, 2]\n", b"a: [\n", b""])
def test_a_plaintext_that_is_not_a_vault_document_fails_without_quoting_it(
    tmp_path: Path, key, plaintext: bytes
) -> None:
    path = tmp_path / "vault.age"
    path.write_bytes(pyrage.encrypt(plaintext, [key.to_public()], armored=True))
    with pytest.raises(NotAVaultDocument) as err:
        BlobFile(path).read([key])
    assert str(err.value).startswith(f"vault {path}: vault document")


def test_a_document_error_never_quotes_the_value(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    bad = f'secrets:\n  s:\n    value: "{CANARY}"\n    roll_count: "{CANARY}"\n'.encode()
    path.write_bytes(pyrage.encrypt(bad, [key.to_public()], armored=True))
    with pytest.raises(NotAVaultDocument) as err:
        BlobFile(path).read([key])
    assert CANARY not in str(err.value) and CANARY not in repr(err.value)


def test_the_blob_header_counts_x25519_recipients_without_a_key(key) -> None:
    others = [pyrage.x25519.Identity.generate() for _ in range(2)]
    one = blob_mod.encrypt(b"secrets: {}\n", [key.to_public()])
    two = blob_mod.encrypt(b"secrets: {}\n", [key.to_public(), others[0].to_public()])
    three = pyrage.encrypt(b"x", [key.to_public(), *(o.to_public() for o in others)])  # binary, unarmored
    assert (recipient_count(one), recipient_count(two), recipient_count(three)) == (1, 2, 3)
    with pytest.raises(NotAgeData):
        recipient_count(b"secrets: {}\n")


def test_no_message_or_repr_holds_a_value(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    prepared = blob.prepare(_doc(value=CANARY + "-2"), [key.to_public()])
    assert prepared is not None
    for shown in (repr(prepared), str(prepared), repr(blob), f"{prepared}"):
        assert CANARY not in shown
    path.write_bytes(b"tampered")
    with pytest.raises(BlobModifiedExternally) as err:
        blob.commit(prepared)
    assert CANARY not in str(err.value) and CANARY not in repr(err.value)


def test_new_files_are_created_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files.write_new(tmp_path / "k", b"x")
        files.replace(tmp_path / "b", b"y")
    finally:
        os.umask(old)
    assert {stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("k", "b")} == {0o600}


def test_write_new_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        files.write_new(tmp_path / "k", b"new")
    assert (tmp_path / "k").read_bytes() == b"old"


def test_only_our_stale_temp_files_are_removed(tmp_path: Path) -> None:
    ours = tmp_path / ".vault-0123456789abcdef"
    theirs = tmp_path / ".vault-notes"
    ours.write_bytes(b"stale")
    theirs.write_bytes(b"keep")
    assert files.remove_stale_temps(tmp_path) == [ours]
    assert not ours.exists() and theirs.exists()


def test_parse_of_a_document_survives_the_blob_round_trip_byte_for_byte(tmp_path: Path, key) -> None:
    path = tmp_path / "vault.age"
    blob = _written(path, key)
    prepared = blob.reencrypt([key.to_public()])
    assert parse(prepared.yaml) == _doc()
    assert prepared.sha256 != blob.sha256  # same plaintext, fresh encryption


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=1, max_size=200).filter(lambda v: "\x00" not in v))
def test_any_value_round_trips_through_the_blob_and_never_shows_in_it(tmp_path: Path, key, value: str) -> None:
    path = tmp_path / f"{uuid.uuid4()}.age"
    blob = _written(path, key, _doc(value=value))
    assert BlobFile(path).read([key]).secrets["smtp_pw"].value == value
    assert blob.prepare(_doc(value=value), [key.to_public()]) is None  # same YAML: no rewrite
    if len(value) >= 8:
        assert value.encode() not in path.read_bytes()
