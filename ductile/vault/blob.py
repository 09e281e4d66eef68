"""The vault blob, ``vault.age`` (vault.md §1): the vault document as YAML, age X25519, armored.

Reading fails closed: a missing file (when a vault is expected), bytes that are not age data, a
failed decryption and a plaintext that is not a vault document are four distinct errors, never an
empty vault. Writing is split in two because the event log sits in the middle (vault.md §3):

    prepared = blob.prepare(doc, recipients)   # marshal, skip if unchanged, external check, encrypt
    if prepared is not None:
        ...append the change's event with prepared.sha256 / prepared.prev_sha256...
        blob.commit(prepared)                  # temp, 0600, fsync, rename, fsync dir
    # on BlobWriteFailed: append VaultWriteAborted and carry on with blob.last_written()

No message or repr here contains plaintext: the YAML holds every secret value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import pyrage

from ductile.vault import files
from ductile.vault.document import VaultDocument, VaultDocumentError, marshal, parse
from ductile.vault.keys import AGE_MAGIC, ARMOR_BEGIN, encrypt

MAGIC = AGE_MAGIC + b"\n"  # the first line of every age file's header
_ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
MODIFIED_EXTERNALLY = "vault: blob was modified externally"


class VaultBlobError(Exception):
    """The blob could not be read or written. Messages name the file, never its contents."""


class VaultMissing(VaultBlobError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"no vault at {path} (run 'ductile vault init')")


class NotAgeData(VaultBlobError):
    def __init__(self, path: Path | str) -> None:
        super().__init__(f"{path} is not age-encrypted")


class VaultUndecryptable(VaultBlobError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"vault {path} could not be decrypted with the age key ({reason})")


class NotAVaultDocument(VaultBlobError):
    def __init__(self, path: Path, error: VaultDocumentError) -> None:
        super().__init__(f"vault {path}: {error}")


class BlobModifiedExternally(VaultBlobError):
    """The file on disk is not the blob Ductile last read or wrote: nothing was written."""

    def __init__(self) -> None:
        super().__init__(MODIFIED_EXTERNALLY)


class BlobWriteFailed(VaultBlobError):
    """The blob write did not land; the file on disk is the previous blob."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else type(cause).__name__
        super().__init__(f"vault: writing {path} failed: {reason}")


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def disk_sha256(path: Path) -> str | None:
    """The sha256 of the file at ``path``, None when there is none (the boot agreement check, §3)."""
    try:
        return sha256_hex(path.read_bytes())
    except FileNotFoundError:
        return None


def _header(blob: bytes) -> bytes | None:
    """The age header's bytes (binary or armored input), None when ``blob`` is not age data."""
    data = blob.strip()
    if data.startswith(ARMOR_BEGIN):
        if not data.endswith(_ARMOR_END):
            return None
        body = b"".join(data[len(ARMOR_BEGIN):-len(_ARMOR_END)].split())
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n--- ")
    return data[: end + 1] if end >= 0 else None


def recipient_count(blob: bytes, path: Path | str = "vault blob") -> int:
    """How many X25519 recipients the blob is encrypted to, read from its header without a key
    (`vault status`: 2 means an unfinished `rotate-key`). Grease stanzas do not count."""
    header = _header(blob)
    if header is None:
        raise NotAgeData(path)
    return sum(1 for line in header.split(b"\n") if line.startswith(b"-> X25519 "))


def decrypt(
    blob: bytes, identities: Sequence[pyrage.x25519.Identity], path: Path
) -> bytes:
    """The plaintext of an age blob. Not age data and a failed decryption are distinct errors."""
    if _header(blob) is None:
        raise NotAgeData(path)
    try:
        plaintext: bytes = pyrage.decrypt(blob, list(identities))
    except pyrage.DecryptError as exc:
        # pyrage's text is about keys and framing ("No matching keys found"), never the plaintext.
        raise VaultUndecryptable(path, str(exc)) from None
    return plaintext


class PreparedWrite(msgspec.Struct, frozen=True, kw_only=True):
    """An encrypted blob ready to be written: its hash is known before the file is, so the use case
    commits the change's event (``blob_sha256``/``prev_blob_sha256``) before calling ``commit``."""

    blob: bytes
    sha256: str
    prev_sha256: str  # "" when there was no blob before (vault init)
    yaml: bytes  # the plaintext: secret values

    def __repr__(self) -> str:
        return f"PreparedWrite(sha256={self.sha256!r}, prev_sha256={self.prev_sha256!r})"


class BlobFile:
    """The vault file at ``path`` and the last blob Ductile read or wrote there.

    That memory is the external-modification check's reference (vault.md §1) and the YAML a failed
    write rolls back to. One instance per vault file per process; callers serialise writes (the
    daemon's vault use cases hold one lock), as ``prepare`` then ``commit`` is one write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sha256: str | None = None  # None: no blob known, so none may exist on disk
        self._yaml: bytes | None = None

    def __repr__(self) -> str:
        return f"BlobFile({str(self.path)!r}, sha256={self._sha256!r})"

    @property
    def sha256(self) -> str | None:
        """The hash of the last blob read or written, None before the first."""
        return self._sha256

    @property
    def plaintext(self) -> bytes:
        """The YAML of the last blob read or written, exactly as decrypted: it holds every value,
        so it goes to ``parse`` or ``encrypt`` and nowhere else."""
        if self._yaml is None:
            raise VaultMissing(self.path)
        return self._yaml

    def exists(self) -> bool:
        return self.path.exists()

    def read(self, identities: Sequence[pyrage.x25519.Identity]) -> VaultDocument:
        """Read, decrypt and parse the blob, and remember it as the last blob seen. Fails closed."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            raise VaultMissing(self.path) from None
        plaintext = decrypt(blob, identities, self.path)
        try:
            doc = parse(plaintext)
        except VaultDocumentError as exc:
            raise NotAVaultDocument(self.path, exc) from None
        self._sha256, self._yaml = sha256_hex(blob), plaintext
        return doc

    def last_written(self) -> VaultDocument:
        """The document of the last blob read or written: what memory is rebuilt from after a
        failed write, so memory never disagrees with disk."""
        return parse(self.plaintext)

    def prepare(
        self, doc: VaultDocument, recipients: Sequence[pyrage.x25519.Recipient]
    ) -> PreparedWrite | None:
        """Marshal and encrypt ``doc``; None when its YAML is the last written one (nothing to do).
        Raises BlobModifiedExternally when the file on disk is not the last blob seen."""
        yaml = marshal(doc)
        if yaml == self._yaml:
            return None
        return self._encrypt(yaml, recipients)

    def reencrypt(self, recipients: Sequence[pyrage.x25519.Recipient]) -> PreparedWrite:
        """The last blob's exact plaintext encrypted to other recipients (`rotate-key`, §8)."""
        return self._encrypt(self.plaintext, recipients)

    def _encrypt(self, yaml: bytes, recipients: Sequence[pyrage.x25519.Recipient]) -> PreparedWrite:
        self._check_unmodified()
        blob = encrypt(yaml, recipients)
        return PreparedWrite(blob=blob, sha256=sha256_hex(blob), prev_sha256=self._sha256 or "", yaml=yaml)

    def _check_unmodified(self) -> None:
        if disk_sha256(self.path) != self._sha256:
            raise BlobModifiedExternally()

    def commit(self, prepared: PreparedWrite, *, before_rename: Callable[[], None] | None = None) -> None:
        """Write a prepared blob (atomic, 0600, fsynced, no backup) and remember it. The external
        check runs again: the file may have changed while the event was being committed.
        ``before_rename`` is a crash test's hook (see ``files.replace``)."""
        if prepared.prev_sha256 != (self._sha256 or ""):
            raise ValueError("vault: a prepared write must be committed before the next one is prepared")
        self._check_unmodified()
        try:
            files.replace(self.path, prepared.blob, before_rename=before_rename)
        except OSError as exc:
            raise BlobWriteFailed(self.path, exc) from exc
        self._sha256, self._yaml = prepared.sha256, prepared.yaml
