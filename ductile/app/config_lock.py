"""`ductile config lock` (config.md §6.4): hash every config file into a fresh ``.checksums``.

The load here is the include walk only — no integrity check and no validation — so a config that
drifted or does not validate yet can still be locked; a file that does not parse is an error.
``plugin_fingerprints`` are carried forward for plugins still under ``plugins:`` and dropped for the
rest: plugin bytes are never re-hashed here (only `plugin lock` approves plugin bytes, keyed with
the vault nonce, vault.md §9).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

import msgspec

from ductile.config.checksums import Checksums, ChecksumsError, read_checksums, write_checksums
from ductile.config.discovery import ConfigSource
from ductile.config.includes import IncludeWalk
from ductile.config.integrity import Tier, file_hash, locked_files, tier_of
from ductile.config.merging import merge_documents
from ductile.config.paths import home_directory
from ductile.events.timefmt import now_ns, rfc3339_seconds

DISCOVER = "DISCOVER [{tier}] {path}"
PRESERVE = "PRESERVE [plugin] {name}"
PRUNE = "PRUNE [plugin] {name}"
WROTE = "WROTE .checksums: {path}"
LOCKED = "Successfully locked configuration in 1 directory:\n  {dir}"
DRY_RUN = "Dry-run: would lock {count} file(s) in {dir}"


class ConfigLockError(Exception):
    """`config lock` could not read the config or the existing lock (exit 1)."""


class LockedFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str  # absolute, as recorded in ``hashes``
    tier: Tier
    blake3: str


class LockPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The manifest `config lock` would write, with what it found on the way (for ``--verbose``)."""

    config_dir: Path
    files: list[LockedFile]
    preserved: list[str]  # plugin_fingerprints carried forward
    pruned: list[str]  # plugin_fingerprints dropped: their plugin is no longer under ``plugins:``
    lock: Checksums


def _hash(path: Path) -> str:
    try:
        return file_hash(path)
    except OSError as exc:
        raise ConfigLockError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _configured_plugins(walk: IncludeWalk) -> set[str]:
    plugins = merge_documents(walk.documents).data.get("plugins")
    return {str(name) for name in plugins} if isinstance(plugins, dict) else set()


def plan_lock(source: ConfigSource, environ: MutableMapping[str, str], *, now: int | None = None) -> LockPlan:
    """Read the config the way the loader does and compute the fresh manifest. Writes nothing.

    ``environ`` receives the variables of ``environment_vars.include`` files, as in a load. Raises
    ConfigError when a file cannot be read or parsed, ConfigLockError when the existing lock cannot."""
    config_dir = Path(os.path.abspath(source.config_dir))
    walk = IncludeWalk(source, environ, home_directory(environ)).run()
    try:
        previous = read_checksums(config_dir)
    except ChecksumsError as exc:  # its fingerprints cannot be carried forward: never drop them silently
        raise ConfigLockError(str(exc)) from None
    files = [LockedFile(path=str(p), tier=tier_of(p, config_dir), blake3=_hash(p)) for p in locked_files(walk.files, config_dir)]
    configured = _configured_plugins(walk)
    recorded = previous.plugin_fingerprints if previous else ()
    kept = [e for e in recorded if e.name in configured]
    lock = Checksums(
        generated_at=rfc3339_seconds(now_ns() if now is None else now),
        hashes={f.path: f.blake3 for f in files},
    ).with_fingerprints(kept)
    return LockPlan(
        config_dir=config_dir, files=files,
        preserved=sorted(e.name for e in kept),
        pruned=sorted(e.name for e in recorded if e.name not in configured),
        lock=lock,
    )


def write_lock(plan: LockPlan) -> Path:
    """Write the planned manifest atomically (0600, previous owner kept); returns its path."""
    try:
        return write_checksums(plan.config_dir, plan.lock)
    except OSError as exc:
        raise ConfigLockError(f"{plan.config_dir / '.checksums'}: cannot write: {exc.strerror or exc}") from None


def verbose_lines(plan: LockPlan) -> list[str]:
    """The ``--verbose`` lines before the write, in §6.4's words."""
    return [
        *(DISCOVER.format(tier=f.tier, path=f.path) for f in plan.files),
        *(PRESERVE.format(name=n) for n in plan.preserved),
        *(PRUNE.format(name=n) for n in plan.pruned),
    ]
