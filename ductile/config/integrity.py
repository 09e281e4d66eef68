"""Integrity verification against ``.checksums`` (config.md §6.1, §6.3): which files are locked,
their tier, and every rule of §6.3's table with its exact message.

``config lock`` (app/config_lock.py) hashes the same set this module verifies, so the set and the
tiers live here once. Verification reads files but decides nothing about admission: the gates of
§7 (admission.py) turn these findings into a refusal or a warning.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import blake3
import msgspec

from ductile.config.checksums import CHECKSUMS_NAME, Checksums, ChecksumsError, read_checksums
from ductile.config.errors import ConfigError

# Hashed when present in configDir even when nothing includes them (§6.1).
ALWAYS_HASHED = ("webhooks.yaml", "tokens.yaml", "routes.yaml", "relay-instances.yaml", "relay-ingress.yaml")
HIGH_SECURITY_NAMES = frozenset({"webhooks.yaml", "tokens.yaml"})
SCOPES_DIR = "scopes"

NOT_LOCKED = "configuration is not locked; run 'ductile config lock' to enable integrity verification"
_RELOCK = "if you made this change, run 'ductile config lock --config-dir {dir}'"
TAMPERED = "tampering detected: {path} does not match .checksums (high-security file); " + _RELOCK
TAMPERED_UNRECORDED = "tampering detected: {path} is not recorded in .checksums (high-security file); " + _RELOCK
TAMPERED_NO_LOCK = ("tampering detected: {dir}/.checksums is missing but high-security files exist ({names}); "
                    "run 'ductile config lock --config-dir {dir}'")
DRIFT = "config drift: {path} changed since the last 'ductile config lock' (operational file)"
DRIFT_UNRECORDED = "config drift: {path} is not recorded in .checksums (operational file)"
STALE = "stale .checksums entry: {path}"


class Tier(StrEnum):
    """How a mismatch of the file is treated at verification (§6.1's table)."""

    HIGH_SECURITY = "high-security"
    OPERATIONAL = "operational"


class IntegrityKind(StrEnum):
    """Which row of §6.3's table a finding comes from."""

    LOCK_UNREADABLE = "lock_unreadable"  # error, always
    TAMPERING = "tampering"  # high-security: error, always
    NOT_LOCKED = "not_locked"  # no .checksums, no high-security file: warning (fatal under a gate)
    DRIFT = "drift"  # operational: warning (fatal under fail_on_drift)
    STALE = "stale"  # an entry for a file no longer loaded: warning, `config check` only


class IntegrityFinding(msgspec.Struct, frozen=True):
    kind: IntegrityKind
    message: str
    path: str | None = None  # the file concerned, absolute

    @property
    def is_error(self) -> bool:
        """Errors whatever the admission flags (§6.3: unreadable lock, any high-security failure)."""
        return self.kind in (IntegrityKind.LOCK_UNREADABLE, IntegrityKind.TAMPERING)


class IntegrityReport(msgspec.Struct, frozen=True):
    findings: list[IntegrityFinding]

    def of(self, kind: IntegrityKind) -> list[IntegrityFinding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def errors(self) -> list[IntegrityFinding]:
        return [f for f in self.findings if f.is_error]

    @property
    def error_text(self) -> str:
        """The always-fatal findings as one message (empty when there are none)."""
        return "\n".join(f.message for f in self.errors)

    @property
    def drifted(self) -> list[str]:
        return [f.path or "" for f in self.of(IntegrityKind.DRIFT)]


def tier_of(path: Path, config_dir: Path) -> Tier:
    if path.name in HIGH_SECURITY_NAMES:
        return Tier.HIGH_SECURITY
    if path.suffix == ".json" and path.parent.name == SCOPES_DIR and path.parent.parent == config_dir:
        return Tier.HIGH_SECURITY
    return Tier.OPERATIONAL


def locked_files(loaded: list[Path], config_dir: Path) -> list[Path]:
    """§6.1's set in the order it was found: what the loader read, then the always-hashed files
    of ``config_dir`` (absolute paths, each once)."""
    found = [Path(os.path.abspath(p)) for p in loaded]
    found += [config_dir / name for name in ALWAYS_HASHED if (config_dir / name).is_file()]
    scopes = config_dir / SCOPES_DIR
    if scopes.is_dir():
        found += sorted(p for p in scopes.iterdir() if p.suffix == ".json" and p.is_file())
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def file_hash(path: Path) -> str:
    """Unkeyed BLAKE3-256 of the raw bytes, lowercase hex (§6.1). Raises OSError."""
    return blake3.blake3(path.read_bytes()).hexdigest()


def verify(loaded: list[Path], config_dir: Path) -> IntegrityReport:
    """Every rule of §6.3 for the files a load read (``Config.files``) plus §6.1's extras."""
    config_dir = Path(os.path.abspath(config_dir))
    files = locked_files(loaded, config_dir)
    try:
        lock = read_checksums(config_dir)
    except ChecksumsError as exc:
        return IntegrityReport([IntegrityFinding(IntegrityKind.LOCK_UNREADABLE, str(exc), str(config_dir / CHECKSUMS_NAME))])
    high = [p for p in files if tier_of(p, config_dir) is Tier.HIGH_SECURITY]
    if lock is None:
        if high:
            names = ", ".join(str(p.relative_to(config_dir)) if p.is_relative_to(config_dir) else str(p) for p in high)
            message = TAMPERED_NO_LOCK.format(dir=config_dir, names=names)
            return IntegrityReport([IntegrityFinding(IntegrityKind.TAMPERING, message, str(config_dir / CHECKSUMS_NAME))])
        return IntegrityReport([IntegrityFinding(IntegrityKind.NOT_LOCKED, NOT_LOCKED)])
    findings = [f for p in files if (f := _check_file(p, config_dir, lock)) is not None]
    current = {str(p) for p in files}
    findings += [IntegrityFinding(IntegrityKind.STALE, STALE.format(path=recorded), recorded)
                 for recorded in lock.hashes if recorded not in current]
    return IntegrityReport(findings)


def refuse_tampering(loaded: list[Path], config_dir: Path) -> None:
    """The part of §6.3 every full load runs whatever the admission flags (`config show/get`,
    `plugin lock`, `config token create`; boot and reload run it through the gates of §7): an
    unreadable lock or a high-security failure raises ``ConfigError``. Drift and a missing
    manifest are left to the commands that report them (`config check`, boot, reload)."""
    fatal = verify(loaded, config_dir).error_text
    if fatal:
        raise ConfigError(fatal)


def _check_file(path: Path, config_dir: Path, lock: Checksums) -> IntegrityFinding | None:
    try:
        actual = file_hash(path)
    except OSError as exc:
        return IntegrityFinding(IntegrityKind.LOCK_UNREADABLE, f"{path}: cannot read: {exc.strerror or exc}", str(path))
    recorded = lock.hashes.get(str(path))
    if recorded is None and not path.is_relative_to(config_dir):
        recorded = _own_directory_hash(path)
    if recorded is not None and recorded.lower() == actual:
        return None
    high = tier_of(path, config_dir) is Tier.HIGH_SECURITY
    if recorded is None:
        template = TAMPERED_UNRECORDED if high else DRIFT_UNRECORDED
    else:
        template = TAMPERED if high else DRIFT
    kind = IntegrityKind.TAMPERING if high else IntegrityKind.DRIFT
    return IntegrityFinding(kind, template.format(path=path, dir=config_dir), str(path))


def _own_directory_hash(path: Path) -> str | None:
    """A file outside configDir may be recorded by the ``.checksums`` of its own directory (§6.2:
    existing per-directory locks keep working). An unreadable one records nothing."""
    try:
        lock = read_checksums(path.parent)
    except ChecksumsError:
        return None
    return lock.hashes.get(str(path)) if lock is not None else None
