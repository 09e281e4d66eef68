"""The file mechanics of `ductile vault rotate-key` (vault.md §8): crash-safe at every point.

The age key and the blob are two files that cannot be renamed together, so the rotation walks
through states in which *some* key on disk always opens `vault.age`:

    0 mint    new identity; plaintext = the blob's current YAML, byte for byte
    1 bridge  blob encrypted to {old, new}             (either key opens it)
    2 verify  the new identity alone decrypts the file (else back to {old}, abort)
    3 stage   `<key>.rotate-new` written 0600, loaded back (mode check), decrypts the blob
    4 promote staged key renamed over `<key>`, dir fsynced: the old private key is gone
    5 final   blob encrypted to {new} only

A re-run from any crash state works: the key on disk opens the blob, and a stale staged key or
temp blob from the crashed run is deleted first. Each blob write is announced to ``before_write``
first, where the use case commits the write's event (vault.md §3), and the prepared write carries
the hashes that event needs. This module holds no lock and no log: the caller takes the PID lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from enum import IntEnum, StrEnum
from pathlib import Path

import msgspec
import pyrage

from ductile.vault import files, mint
from ductile.vault.blob import BlobFile, PreparedWrite, decrypt
from ductile.vault.keys import key_file_text, load_keyring

STAGED_SUFFIX = ".rotate-new"
KEY_AUTHOR = "ductile vault rotate-key"  # the staged key's header: `# created by ductile vault rotate-key`
OLD_KEY_LIVE = "(old key still live at {key} — re-run)"
NEW_KEY_LIVE = "(new key is live at {key} — re-run or restore)"


class RotationStep(IntEnum):
    MINT = 0
    BRIDGE = 1
    VERIFY = 2
    STAGE = 3
    PROMOTE = 4
    FINALISE = 5


class BlobWrite(StrEnum):
    """Which blob write ``before_write`` is told about; each is preceded by its own event."""

    BRIDGE = "bridge"  # step 1: {old, new}
    REVERT = "revert"  # step 2 failed: back to {old}
    FINAL = "final"  # step 5: {new}


class CrashPoint(StrEnum):
    """Where a test's ``fault`` hook runs: after what has happened. An exception raised there is a
    failure of the step in progress (the failure column of §8); ``os._exit`` there is a crash (the
    crash table)."""

    MINTED = "minted"
    BRIDGE_BEFORE_RENAME = "bridge-before-rename"
    BRIDGED = "bridged"
    VERIFIED = "verified"
    STAGED = "staged"
    PROMOTED = "promoted"
    FINAL_BEFORE_RENAME = "final-before-rename"
    FINALISED = "finalised"


BeforeWrite = Callable[[BlobWrite, PreparedWrite], None]
KeyLoader = Callable[[Path], Sequence[pyrage.x25519.Identity]]
Fault = Callable[[CrashPoint], None]


class RotationResult(msgspec.Struct, frozen=True, kw_only=True):
    key_path: str
    recipient: str  # the new public key, age1…: the audit detail `recipient=age1…`


class RotationAborted(Exception):
    """A step failed; ``step`` and ``cause`` are the audit record's detail. Never holds a value."""

    def __init__(self, step: RotationStep, cause: str, key_path: Path) -> None:
        self.step = step
        self.cause = cause
        message = f"vault rotate-key: step {int(step)} ({step.name.lower()}) failed: {cause}"
        if step in (RotationStep.STAGE, RotationStep.PROMOTE):
            message += " " + OLD_KEY_LIVE.format(key=key_path)
        elif step == RotationStep.FINALISE:
            message += " " + NEW_KEY_LIVE.format(key=key_path)
        super().__init__(message)


def success_lines(result: RotationResult) -> list[str]:
    """Step 6's stderr lines, in order."""
    return [
        "Rotated the vault key; the previous key is retired.",
        f"New key written to {result.key_path} (mode 0600) — BACK IT UP NOW; backups taken before this "
        "rotation need the old key.",
        f"New public recipient: {result.recipient}",
    ]


def staged_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + STAGED_SUFFIX)


def _identities(path: Path) -> Sequence[pyrage.x25519.Identity]:
    return load_keyring(path).identities


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _no_fault(_: CrashPoint) -> None:
    return None


def rotate_key(
    *,
    key_path: Path,
    vault_path: Path,
    identity: pyrage.x25519.Identity,
    before_write: BeforeWrite,
    load_key: KeyLoader = _identities,
    fault: Fault = _no_fault,
) -> RotationResult:
    """Rotate the vault's age key from ``identity`` (the key at ``key_path``) to a fresh one.

    Raises RotationAborted for a failed step, with §8's text; read errors of the blob before step 0
    (VaultBlobError) propagate unchanged. ``before_write`` is called before each blob write and may
    raise to stop it (its event could not be committed): that is a failure of the step.
    """
    staged = staged_key_path(key_path)
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()  # a crashed run's staged key: never the live one, see step 3
    files.remove_stale_temps(vault_path.parent)
    blob = BlobFile(vault_path)
    blob.read([identity])
    plaintext = blob.plaintext
    old = identity.to_public()

    try:  # 0 mint
        new = mint.identity()
        fault(CrashPoint.MINTED)
    except Exception as exc:
        raise RotationAborted(RotationStep.MINT, _describe(exc), key_path) from exc

    def write(which: BlobWrite, recipients: list[pyrage.x25519.Recipient], crash: CrashPoint | None) -> None:
        prepared = blob.reencrypt(recipients)
        before_write(which, prepared)
        blob.commit(prepared, before_rename=(lambda: fault(crash)) if crash else None)

    try:  # 1 bridge
        write(BlobWrite.BRIDGE, [old, new.to_public()], CrashPoint.BRIDGE_BEFORE_RENAME)
    except Exception as exc:
        raise RotationAborted(RotationStep.BRIDGE, _describe(exc), key_path) from exc

    try:  # 2 verify
        fault(CrashPoint.BRIDGED)
        if decrypt(vault_path.read_bytes(), [new], vault_path) != plaintext:
            raise ValueError("the new key decrypts the bridge blob to different bytes")
    except Exception as exc:
        aborted = RotationAborted(RotationStep.VERIFY, _describe(exc), key_path)
        try:
            write(BlobWrite.REVERT, [old], None)
        except Exception as revert:
            raise aborted from revert
        raise aborted from exc

    step = RotationStep.STAGE
    try:  # 3 stage
        fault(CrashPoint.VERIFIED)
        files.write_new(staged, key_file_text(new, KEY_AUTHOR).encode())
        decrypt(vault_path.read_bytes(), load_key(staged), vault_path)
        step = RotationStep.PROMOTE
        fault(CrashPoint.STAGED)
        os.replace(staged, key_path)  # 4 promote: the one point where the live key changes
    except Exception as exc:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        raise RotationAborted(step, _describe(exc), key_path) from exc

    try:  # 5 finalise (the new key is live from here on)
        files.fsync_dir(key_path.parent)
        fault(CrashPoint.PROMOTED)
        write(BlobWrite.FINAL, [new.to_public()], CrashPoint.FINAL_BEFORE_RENAME)
    except Exception as exc:
        raise RotationAborted(RotationStep.FINALISE, _describe(exc), key_path) from exc
    fault(CrashPoint.FINALISED)
    return RotationResult(key_path=str(key_path), recipient=str(new.to_public()))
