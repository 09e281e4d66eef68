"""`vault rotate-key`'s file mechanics (vault.md §8): the steps, the failure column, and the crash
table, by an exception at every point and by a real kill of a process at every point. Whatever
happens, a key on disk opens `vault.age`, and a re-run finishes the rotation."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import msgspec
import pyrage
import pytest

from ductile.vault import blob as blob_mod
from ductile.vault.blob import BlobFile, PreparedWrite, VaultUndecryptable
from ductile.vault.document import CORE, Principal, Secret, VaultDocument
from ductile.vault.keys import key_file_text, load_keyring
from ductile.vault.rotation import (
    BeforeWrite,
    BlobWrite,
    CrashPoint,
    Fault,
    KeyLoader,
    RotationAborted,
    RotationResult,
    RotationStep,
    rotate_key,
    staged_key_path,
    success_lines,
)
from ductile.vocabulary import PrincipalKind

CANARY = f"CANARY-{uuid.uuid4()}"


class Vault(msgspec.Struct):
    dir: Path
    key_path: Path
    vault_path: Path
    old: pyrage.x25519.Identity
    plaintext: bytes
    original_blob: bytes

    def key_on_disk(self) -> str:
        """'old', 'new' (some other key) for the live key file."""
        return "old" if self.key_path.read_bytes() == key_file_text(self.old, "test").encode() else "new"

    def recipients(self) -> int:
        return blob_mod.recipient_count(self.vault_path.read_bytes())

    def opens_with_the_key_on_disk(self) -> bool:
        plaintext = blob_mod.decrypt(self.vault_path.read_bytes(), load_keyring(self.key_path).identities, self.vault_path)
        return plaintext == self.plaintext


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    old = pyrage.x25519.Identity.generate()
    key_path = tmp_path / "age.key"
    key_path.write_bytes(key_file_text(old, "test").encode())
    key_path.chmod(0o600)
    doc = VaultDocument(
        secrets={"smtp_pw": Secret(value=CANARY, authorized_principals=("mailer",))},
        principals={CORE: Principal(kind=PrincipalKind.GATEWAY, nonce="bm9uY2U"),
                    "mailer": Principal(kind=PrincipalKind.PLUGIN)},
    )
    blob = BlobFile(tmp_path / "vault.age")
    prepared = blob.prepare(doc, [old.to_public()])
    assert prepared is not None
    blob.commit(prepared)
    return Vault(dir=tmp_path, key_path=key_path, vault_path=blob.path, old=old, plaintext=prepared.yaml,
                 original_blob=prepared.blob)


class Recorder:
    """The use case's stand-in: 'commits an event' per blob write, in order."""

    def __init__(self) -> None:
        self.writes: list[tuple[BlobWrite, PreparedWrite]] = []

    def __call__(self, which: BlobWrite, prepared: PreparedWrite) -> None:
        self.writes.append((which, prepared))


def _rotate(v: Vault, before_write: BeforeWrite | None = None, load_key: KeyLoader = lambda p: load_keyring(p).identities,
            fault: Fault | None = None) -> RotationResult:
    return rotate_key(key_path=v.key_path, vault_path=v.vault_path, identity=load_keyring(v.key_path).identities[0],
                      before_write=before_write or Recorder(), load_key=load_key,
                      fault=fault or (lambda _: None))


def _assert_finished(v: Vault, retired: list[pyrage.x25519.Identity]) -> None:
    assert v.recipients() == 1
    assert v.key_on_disk() == "new"
    assert v.opens_with_the_key_on_disk()
    for key in retired:
        with pytest.raises(VaultUndecryptable):
            blob_mod.decrypt(v.vault_path.read_bytes(), [key], v.vault_path)
    assert sorted(p.name for p in v.dir.iterdir()) == ["age.key", "vault.age"]  # no staged key, temp, .bak
    assert {stat.S_IMODE(p.stat().st_mode) for p in v.dir.iterdir()} == {0o600}


def test_a_finished_rotation_leaves_one_recipient_and_retires_the_old_key(vault: Vault) -> None:
    events = Recorder()
    result = _rotate(vault, before_write=events)
    _assert_finished(vault, [vault.old])
    lines = vault.key_path.read_text().splitlines()
    assert lines[0] == "# created by ductile vault rotate-key"
    assert lines[1] == f"# public key: {result.recipient}"
    assert [w for w, _ in events.writes] == [BlobWrite.BRIDGE, BlobWrite.FINAL]
    bridge, final = (p for _, p in events.writes)
    assert bridge.prev_sha256 == blob_mod.sha256_hex(vault.original_blob)
    assert final.prev_sha256 == bridge.sha256
    assert blob_mod.disk_sha256(vault.vault_path) == final.sha256


def test_the_success_lines_are_the_spec_text(vault: Vault) -> None:
    result = _rotate(vault)
    assert success_lines(result) == [
        "Rotated the vault key; the previous key is retired.",
        f"New key written to {vault.key_path} (mode 0600) — BACK IT UP NOW; backups taken before this "
        "rotation need the old key.",
        f"New public recipient: {result.recipient}",
    ]


def test_a_stale_staged_key_and_temp_blob_are_deleted_first(vault: Vault) -> None:
    staged_key_path(vault.key_path).write_bytes(b"junk from a crashed run")
    (vault.dir / ".vault-0123456789abcdef").write_bytes(b"stale bridge blob")
    _rotate(vault)
    _assert_finished(vault, [vault.old])


def test_an_event_that_cannot_be_committed_stops_the_write(vault: Vault) -> None:
    def refuse(which: BlobWrite, prepared: PreparedWrite) -> None:
        raise RuntimeError("database is locked")

    with pytest.raises(RotationAborted) as err:
        _rotate(vault, before_write=refuse)
    assert str(err.value) == "vault rotate-key: step 1 (bridge) failed: database is locked"
    assert vault.vault_path.read_bytes() == vault.original_blob and vault.key_on_disk() == "old"


def test_a_staged_key_that_does_not_load_aborts_with_the_old_key_live(vault: Vault) -> None:
    def refuse(path: Path) -> list[pyrage.x25519.Identity]:
        raise PermissionError(13, "Permission denied", str(path))

    with pytest.raises(RotationAborted) as err:
        _rotate(vault, load_key=refuse)
    staged = staged_key_path(vault.key_path)
    assert str(err.value) == (
        f"vault rotate-key: step 3 (stage) failed: {staged}: Permission denied "
        f"(old key still live at {vault.key_path} — re-run)"
    )
    assert not staged.exists() and vault.key_on_disk() == "old" and vault.opens_with_the_key_on_disk()




class Injected(Exception):
    pass


# An exception at each point is a failure of the step in progress: §8's failure column.
FAILURES = [
    # point, aborted step (None: after the rotation), recipients, live key, blob untouched, suffix
    (CrashPoint.MINTED, RotationStep.MINT, 1, "old", True, ""),
    (CrashPoint.BRIDGE_BEFORE_RENAME, RotationStep.BRIDGE, 1, "old", True, ""),
    (CrashPoint.BRIDGED, RotationStep.VERIFY, 1, "old", False, ""),  # re-encrypted to {old}
    (CrashPoint.VERIFIED, RotationStep.STAGE, 2, "old", False, " (old key still live at {key} — re-run)"),
    (CrashPoint.STAGED, RotationStep.PROMOTE, 2, "old", False, " (old key still live at {key} — re-run)"),
    (CrashPoint.PROMOTED, RotationStep.FINALISE, 2, "new", False,
     " (new key is live at {key} — re-run or restore)"),
    (CrashPoint.FINAL_BEFORE_RENAME, RotationStep.FINALISE, 2, "new", False,
     " (new key is live at {key} — re-run or restore)"),
    (CrashPoint.FINALISED, None, 1, "new", False, ""),
]


@pytest.mark.parametrize(("point", "step", "recipients", "live", "untouched", "suffix"), FAILURES,
                         ids=[f[0].value for f in FAILURES])
def test_a_failure_at_each_point_leaves_a_decryptable_pair_and_a_rerun_finishes(
    vault: Vault, point: CrashPoint, step: RotationStep | None, recipients: int, live: str, untouched: bool,
    suffix: str,
) -> None:
    def fault(at: CrashPoint) -> None:
        if at == point:
            raise Injected(f"injected at {at}")

    events = Recorder()
    with pytest.raises(RotationAborted if step is not None else Injected) as err:
        _rotate(vault, fault=fault, before_write=events)
    if step is not None:
        assert str(err.value) == (
            f"vault rotate-key: step {int(step)} ({step.name.lower()}) failed: injected at {point}"
            + suffix.format(key=vault.key_path)
        )
        assert isinstance(err.value, RotationAborted) and err.value.step == step
    assert CANARY not in str(err.value) and CANARY not in repr(err.value)
    assert (vault.recipients(), vault.key_on_disk()) == (recipients, live)
    assert (vault.vault_path.read_bytes() == vault.original_blob) is untouched
    assert vault.opens_with_the_key_on_disk()
    assert not staged_key_path(vault.key_path).exists()
    # Every blob on disk is the last announced write's (agree) or its predecessor (an unlanded write).
    disk = blob_mod.disk_sha256(vault.vault_path)
    last = events.writes[-1][1] if events.writes else None
    assert last is None or disk in (last.sha256, last.prev_sha256)

    _rotate(vault)
    _assert_finished(vault, [vault.old])


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from ductile.vault.keys import load_keyring
    from ductile.vault.rotation import CrashPoint, rotate_key
    key_path, vault_path, point, events = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])

    def before_write(which, prepared):
        with events.open("a") as f:
            f.write(f"{which} {prepared.prev_sha256} {prepared.sha256}\\n")

    def fault(at):
        if at == CrashPoint(point):
            os._exit(17)

    rotate_key(key_path=key_path, vault_path=vault_path, identity=load_keyring(key_path).identities[0],
               before_write=before_write, fault=fault)
    sys.exit(3)  # never reached when the point is hit
""")

# §8's crash table: what a kill at each point leaves on disk.
CRASHES = [
    (CrashPoint.MINTED, 1, "old"),  # 0
    (CrashPoint.BRIDGE_BEFORE_RENAME, 1, "old"),  # 1 before rename
    (CrashPoint.BRIDGED, 2, "old"),  # after 1 … before 4
    (CrashPoint.VERIFIED, 2, "old"),
    (CrashPoint.STAGED, 2, "old"),
    (CrashPoint.PROMOTED, 2, "new"),  # after 4 … 5 before rename
    (CrashPoint.FINAL_BEFORE_RENAME, 2, "new"),
    (CrashPoint.FINALISED, 1, "new"),  # after 5
]


@pytest.mark.parametrize(("point", "recipients", "live"), CRASHES, ids=[c[0].value for c in CRASHES])
def test_a_kill_at_each_point_leaves_the_crash_tables_pair_and_a_rerun_finishes(
    vault: Vault, point: CrashPoint, recipients: int, live: str
) -> None:
    events = vault.dir.parent / "events.txt"
    done = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(vault.key_path), str(vault.vault_path), point.value, str(events)],
        env={**os.environ}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 17, done.stderr
    assert (vault.recipients(), vault.key_on_disk()) == (recipients, live)
    assert vault.opens_with_the_key_on_disk()
    announced = events.read_text().split("\n")[-2].split() if events.exists() else None
    disk = blob_mod.disk_sha256(vault.vault_path)
    assert announced is None or disk in announced[1:]  # the last event's blob, or its predecessor

    _rotate(vault)
    _assert_finished(vault, [vault.old])


