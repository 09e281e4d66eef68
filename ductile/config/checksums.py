"""The integrity lock file ``<configDir>/.checksums`` (config.md §6.2): its model, reader and writer.

This module owns the file's shape only. ``config lock`` (which fills ``hashes``) and the integrity
verification of config.md §6.3 build on it; ``plugin lock`` (vault.md §9) merges
``plugin_fingerprints`` entries through it, and the dispatcher reads those entries to verify a
plugin's bytes before it hands the plugin its secrets.

Writes are atomic and durable (temp file in the same directory, fsync, rename, fsync the
directory), mode 0600, and keep the previous file's owner: the lock is often written by root for
a gateway that runs as another user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml

from ductile.config.atomic import replace_file
from ductile.formats.yaml12 import YamlError, parse_document

CHECKSUMS_NAME = ".checksums"
VERSION = 2
FILE_MODE = 0o600


class ChecksumsError(Exception):
    """``.checksums`` is unreadable, not YAML, or not version 2 (config.md §6.3: always an error)."""


class PluginFingerprintEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ``plugin_fingerprints`` entry: what ``plugin lock`` attested (vault.md §9). An alias
    records its own ``name`` with the base plugin's paths; ``uses`` is "" for a plugin itself."""

    name: str
    enabled: bool = True
    uses: str = ""
    manifest_path: str
    manifest_resolved_path: str
    manifest_hash: str
    entrypoint_path: str
    entrypoint_resolved_path: str
    entrypoint_hash: str


class Checksums(msgspec.Struct, frozen=True, kw_only=True):
    version: int = VERSION
    generated_at: str = ""
    hashes: dict[str, str] = {}  # absolute path -> unkeyed blake3 hex
    plugin_fingerprints: tuple[PluginFingerprintEntry, ...] = ()

    def fingerprint(self, name: str) -> PluginFingerprintEntry | None:
        for entry in self.plugin_fingerprints:
            if entry.name == name:
                return entry
        return None

    def with_fingerprints(self, entries: list[PluginFingerprintEntry]) -> Checksums:
        """The same lock with ``plugin_fingerprints`` replaced (sorted by name, as written)."""
        return msgspec.structs.replace(self, plugin_fingerprints=tuple(sorted(entries, key=lambda e: e.name)))


def checksums_path(config_dir: Path) -> Path:
    return config_dir / CHECKSUMS_NAME


def read_checksums(config_dir: Path) -> Checksums | None:
    """The lock of ``config_dir``; None when there is no ``.checksums``. Raises ChecksumsError."""
    path = checksums_path(config_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChecksumsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = parse_document(raw).value
    except YamlError as exc:
        raise ChecksumsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ChecksumsError(f"{path}: expected a mapping")
    if data.get("version") != VERSION:
        raise ChecksumsError(f"{path}: version must be {VERSION}, got {data.get('version')!r}")
    hashes = data.get("hashes") or {}
    if isinstance(hashes, dict):  # the `blake3:` prefix is accepted on read (config.md §6.1)
        data["hashes"] = {k: v.removeprefix("blake3:") if isinstance(v, str) else v for k, v in hashes.items()}
    try:
        return msgspec.convert(data, Checksums, strict=False)
    except msgspec.ValidationError as exc:
        raise ChecksumsError(f"{path}: {exc}") from None


def render(lock: Checksums) -> bytes:
    """The file's YAML: ``plugin_fingerprints`` omitted when empty, entries sorted by name."""
    doc: dict[str, Any] = {"version": lock.version, "generated_at": lock.generated_at, "hashes": dict(lock.hashes)}
    if lock.plugin_fingerprints:
        doc["plugin_fingerprints"] = [msgspec.structs.asdict(e) for e in sorted(lock.plugin_fingerprints, key=lambda e: e.name)]
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True).encode()


def write_checksums(config_dir: Path, lock: Checksums) -> Path:
    """Write ``.checksums`` atomically (0600, owner of the previous file kept); returns its path."""
    path = checksums_path(config_dir)
    replace_file(path, render(lock), mode=FILE_MODE)
    return path
