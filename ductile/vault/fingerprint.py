"""Plugin attestation fingerprints (vault.md §9).

A fingerprint is BLAKE3 *keyed* with the vault's 32-byte nonce, over one file, in lowercase hex.
Keying makes a fingerprint unforgeable without the vault: someone who can change a plugin's bytes
cannot compute the matching hash. So every path here fails closed when the nonce is missing,
undecodable or the wrong size; there is no unkeyed fallback, not even for a "first run".
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

import blake3
import msgspec

from ductile.vault.document import CORE, VaultDocument
from ductile.vault.mint import NONCE_BYTES

CODE_LENGTH = 5  # hex digits of the `plugin lock --all` confirmation code
_CHUNK = 1 << 20
# base64url only: b64decode's altchars would quietly also accept the standard alphabet's + and /.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class FingerprintError(ValueError):
    """A fingerprint could not be computed. Never quotes the nonce."""


class NonceUnavailable(FingerprintError):
    """The vault holds no usable nonce: fingerprinting fails closed."""


class FingerprintKey:
    """The decoded 32-byte nonce. Its repr hides the bytes: the key is what makes a fingerprint
    unforgeable, so it must not reach a log line or a test failure."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != NONCE_BYTES:
            raise NonceUnavailable(f"vault fingerprint nonce is not {NONCE_BYTES} bytes")
        self._key = key

    @classmethod
    def from_nonce(cls, nonce: str) -> FingerprintKey:
        """The key from the nonce's base64url text (padded or not). Fails closed on anything else."""
        if not nonce:
            raise NonceUnavailable("vault fingerprint nonce is missing")
        if not _BASE64URL.fullmatch(nonce):
            raise NonceUnavailable("vault fingerprint nonce is not base64url")
        try:
            key = base64.b64decode(nonce + "=" * (-len(nonce) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise NonceUnavailable("vault fingerprint nonce is not base64url") from None
        return cls(key)

    @classmethod
    def from_vault(cls, doc: VaultDocument) -> FingerprintKey:
        """The key held by principal `core` (vault.md §2)."""
        core = doc.principals.get(CORE)
        if core is None:
            raise NonceUnavailable("vault fingerprint nonce is missing (no core principal)")
        return cls.from_nonce(core.nonce)

    def hasher(self) -> blake3.blake3:
        return blake3.blake3(key=self._key)

    def __repr__(self) -> str:
        return "FingerprintKey(<hidden>)"


class PluginFingerprint(msgspec.Struct, frozen=True, kw_only=True):
    """The two fingerprints `plugin lock` records for one plugin (config.md §6.2)."""

    manifest: str
    entrypoint: str


class AttestedPlugin(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin of a `plugin lock --all` change set, as the confirmation code covers it."""

    name: str
    uses: str  # the base plugin an alias uses; the plugin's own name otherwise
    manifest_hash: str
    entrypoint_hash: str
    enabled: bool


def file_fingerprint(path: Path, key: FingerprintKey) -> str:
    """The keyed BLAKE3 of the file's bytes, lowercase hex. ``path`` is resolved (symlinks followed)."""
    real = _regular_file(path)
    hasher = key.hasher()
    with real.open("rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def plugin_fingerprint(manifest: Path, entrypoint: Path, key: FingerprintKey) -> PluginFingerprint:
    """The manifest's and the entrypoint's fingerprints, each over its own file. The entrypoint must
    be executable: a file that cannot run is no plugin, and attesting it would approve nothing."""
    real_entry = _regular_file(entrypoint)
    if not os.access(real_entry, os.X_OK):
        raise FingerprintError(f"plugin entrypoint {real_entry} is not executable")
    return PluginFingerprint(
        manifest=file_fingerprint(manifest, key), entrypoint=file_fingerprint(real_entry, key)
    )


def confirmation_code(plugins: Iterable[AttestedPlugin]) -> str:
    """The `plugin lock --all <code>` code: the first 5 hex of BLAKE3 over, per plugin sorted by
    name, ``name\\0uses\\0manifest_hash\\0entrypoint_hash\\0`` and one byte (1 enabled, 0 not).
    Unkeyed on purpose: it only proves the operator saw this change set, it attests nothing."""
    hasher = blake3.blake3()
    for p in sorted(plugins, key=lambda p: p.name):
        hasher.update(f"{p.name}\0{p.uses}\0{p.manifest_hash}\0{p.entrypoint_hash}\0".encode())
        hasher.update(b"\x01" if p.enabled else b"\x00")
    return hasher.hexdigest()[:CODE_LENGTH]


def _regular_file(path: Path) -> Path:
    """The absolute, symlink-resolved path of an existing regular file."""
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except OSError as exc:
        raise FingerprintError(f"cannot fingerprint {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise FingerprintError(f"cannot fingerprint {real}: not a regular file")
    return real
