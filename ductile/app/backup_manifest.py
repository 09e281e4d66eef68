"""``BACKUP_MANIFEST.txt`` (operations.md §7): what a backup archive holds, as msgspec Structs.

One home for the manifest's shape, its YAML text and its parsing, shared by ``system backup``
(which writes it) and ``system restore`` (which trusts nothing in the archive until this manifest
parsed and every member's sha256 matched it).
"""

from __future__ import annotations

import enum
import hashlib

import msgspec
import yaml

MANIFEST_NAME = "BACKUP_MANIFEST.txt"
UID_NAME = "uid.txt"
DB_MEMBER = "db/ductile.sqlite"


class BackupScope(enum.StrEnum):
    """The ladder of §7: each scope archives everything the ones before it do."""

    DB = "db"
    CONFIG = "config"
    PLUGINS = "plugins"
    ALL = "all"

    @property
    def rank(self) -> int:
        return list(BackupScope).index(self)

    def covers(self, other: BackupScope) -> bool:
        return self.rank >= other.rank


class UnknownScope(ValueError):
    pass


def parse_scope(text: str | None) -> BackupScope:
    """Case-insensitive and trimmed; empty means ``config`` (§7)."""
    cleaned = (text or "").strip().lower()
    if not cleaned:
        return BackupScope.CONFIG
    try:
        return BackupScope(cleaned)
    except ValueError:
        raise UnknownScope(f'unknown scope "{text}" (want db|config|plugins|all)') from None


class Placed(msgspec.Struct, frozen=True):
    """Where a tree or file outside the config dir sits in the archive, and where it came from."""

    archive_path: str
    source_path: str


class VaultEntry(msgspec.Struct, frozen=True):
    archive_path: str
    recipient: str
    sha256: str


class Excluded(msgspec.Struct, frozen=True):
    reason: str
    items: list[str]


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """Every field of §7, in its order."""

    ductile_version: str
    ductile_commit: str
    hostname: str
    created_at: str
    scope: BackupScope
    backup_uid: str
    source_db_path: str
    source_db_sha256: str
    source_config_dir: str
    included: list[str]
    files: dict[str, str]  # every member but the manifest itself -> sha256
    vault: VaultEntry | None = None
    excluded: list[Excluded] = []
    plugin_roots: list[Placed] = []
    env_files: list[Placed] = []
    config_external: list[Placed] = []
    warnings: list[str] = []


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_text(manifest: Manifest) -> str:
    return yaml.safe_dump(msgspec.to_builtins(manifest), sort_keys=False, allow_unicode=True, width=4096)


class ManifestInvalid(ValueError):
    pass


def parse_manifest(data: bytes) -> Manifest:
    try:
        loaded = yaml.safe_load(data.decode())
        return msgspec.convert(loaded, Manifest)
    except (yaml.YAMLError, UnicodeDecodeError, msgspec.ValidationError) as exc:
        raise ManifestInvalid(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
