"""``system restore`` (operations.md §8): verify a backup archive whole, then put it back.

Nothing is written until every member has been read and matched against the manifest (sha256,
no member outside it, no absolute path, ``..`` or link) and the archived ``vault.age`` agrees with
the archived DB's last vault event: a tampered archive leaves the disk exactly as it was. The
gateway must be stopped (the PID lock is taken) and existing files are only replaced with
``--force``, which moves each aside first.
"""

from __future__ import annotations

import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import yaml

from ductile.app.backup_manifest import (
    DB_MEMBER,
    MANIFEST_NAME,
    BackupScope,
    Manifest,
    ManifestInvalid,
    parse_manifest,
    sha256_hex,
)
from ductile.commands.vault import agreement
from ductile.config.atomic import replace_file
from ductile.config.interpolation import interpolate_text
from ductile.config.loader import DEFAULT_STATE_PATH
from ductile.config.paths import home_directory, resolve_path
from ductile.projections.vault import load_state
from ductile.system.pidlock import PidLock, PidLockHeld, holder, pid_path
from ductile.vault.keys import KEY_FILE_NAME, AgeKeyError, load_keyring, locate_key
from ductile.vocabulary import VaultAgreement

MAX_TOTAL_BYTES = 10 * 1024**3


class RestoreError(Exception):
    """A refusal; ``restored`` says whether files were already written when it happened."""

    def __init__(self, message: str, restored: list[Restored] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.restored = restored or []


def member_problem(name: str, problem: str) -> str:
    return f"restore: archive member {name} {problem}"


class Restored(msgspec.Struct, frozen=True):
    archive_path: str
    target: str


class RestoreResult(msgspec.Struct, frozen=True, kw_only=True):
    archive: str
    manifest: Manifest
    restored: list[Restored]
    moved_aside: list[str]
    config_dir: Path
    key_problem: str | None  # the §8 instruction when the age key is missing or does not decrypt


class Verified(msgspec.Struct, frozen=True):
    manifest: Manifest
    contents: dict[str, bytes]  # archive path -> bytes, every member but the manifest
    modes: dict[str, int]


def verify_archive(archive: Path) -> Verified:
    """Every check of §8 that needs only the archive; raises RestoreError, writes nothing."""
    try:
        tar = tarfile.open(archive, mode="r:gz")  # noqa: SIM115 - the with below closes it
    except (OSError, tarfile.TarError) as exc:
        raise RestoreError(f"restore: cannot read {archive}: {exc}") from None
    contents: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    total = 0
    with tar:
        try:
            for info in tar:
                name = info.name
                path = PurePosixPath(name)
                if path.is_absolute():
                    raise RestoreError(member_problem(name, "has an absolute path"))
                if ".." in path.parts:
                    raise RestoreError(member_problem(name, "escapes the archive (..)"))
                if info.issym() or info.islnk():
                    raise RestoreError(member_problem(name, "is a link"))
                if not info.isfile():
                    raise RestoreError(member_problem(name, "is not a regular file"))
                if name in contents:
                    raise RestoreError(member_problem(name, "appears twice"))
                total += info.size
                if total > MAX_TOTAL_BYTES:
                    raise RestoreError("restore: archive members exceed 10 GiB")
                extracted = tar.extractfile(info)
                assert extracted is not None  # a regular file
                contents[name] = extracted.read()
                modes[name] = info.mode & 0o7777
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise RestoreError(f"restore: cannot read {archive}: {exc}") from None
    raw_manifest = contents.pop(MANIFEST_NAME, None)
    if raw_manifest is None:
        raise RestoreError(member_problem(MANIFEST_NAME, "is missing"))
    try:
        manifest = parse_manifest(raw_manifest)
    except ManifestInvalid as exc:
        raise RestoreError(member_problem(MANIFEST_NAME, f"is not a valid manifest: {exc}")) from None
    for name, data in contents.items():
        expected = manifest.files.get(name)
        if expected is None:
            raise RestoreError(member_problem(name, "is not in the manifest"))
        if sha256_hex(data) != expected:
            raise RestoreError(member_problem(name, "does not match its sha256 in the manifest"))
    for name in manifest.files:
        if name not in contents:
            raise RestoreError(member_problem(name, "is listed in the manifest but missing"))
    _verify_vault(manifest, contents)
    return Verified(manifest=manifest, contents=contents, modes=modes)


def _verify_vault(manifest: Manifest, contents: dict[str, bytes]) -> None:
    """The archived blob must be the one the archived DB's last vault event names."""
    if manifest.vault is None:
        return
    blob = contents.get(manifest.vault.archive_path)
    if blob is None or sha256_hex(blob) != manifest.vault.sha256:
        raise RestoreError(member_problem(manifest.vault.archive_path, "does not match the manifest's vault entry"))
    db = contents.get(DB_MEMBER)
    if db is None:
        return
    with tempfile.TemporaryDirectory(prefix="ductile-restore-") as scratch:
        copy = Path(scratch) / "snapshot.sqlite"
        copy.write_bytes(db)
        try:
            conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
            try:
                state = load_state(conn.cursor())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise RestoreError(member_problem(DB_MEMBER, f"is not a readable state database: {exc}")) from None
    verdict = agreement(state, sha256_hex(blob))
    if verdict not in (VaultAgreement.AGREE, VaultAgreement.UNLANDED_WRITE, VaultAgreement.NOT_ADOPTED):
        raise RestoreError(member_problem(manifest.vault.archive_path, "does not match the event log of "
                                          f"{DB_MEMBER}"))


def _root_document(contents: dict[str, bytes]) -> dict[str, Any]:
    for name in ("config/config.yaml", "config/config.yml"):
        if name in contents:
            try:
                loaded = yaml.safe_load(contents[name].decode())
            except (yaml.YAMLError, UnicodeDecodeError):
                return {}
            return loaded if isinstance(loaded, dict) else {}
    return {}


def _configured(root: dict[str, Any], section: str, key: str) -> str | None:
    block = root.get(section)
    value = block.get(key) if isinstance(block, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def restored_state_path(contents: dict[str, bytes], config_dir: Path, environ: Mapping[str, str]) -> Path:
    """``state.path`` of the restored root config (as the loader resolves it), default data/ductile.db."""
    root = _root_document(contents)
    text = _configured(root, "state", "path") or _configured(root, "database", "path") or DEFAULT_STATE_PATH
    return resolve_path(interpolate_text(text, dict(environ)), config_dir, home_directory(environ))


def plan_targets(verified: Verified, config_dir: Path, db_target: Path) -> list[tuple[str, Path]]:
    """(archive path, target) for each member that goes back onto the disk (§8 Targets)."""
    m = verified.manifest
    placed = {p.archive_path: Path(p.source_path) for p in (*m.env_files, *m.config_external)}
    roots = [(p.archive_path + "/", Path(p.source_path)) for p in m.plugin_roots]
    targets: list[tuple[str, Path]] = []
    for name in sorted(verified.contents):
        if name == DB_MEMBER:
            targets.append((name, db_target))
        elif name in placed:
            targets.append((name, placed[name]))
        elif name.startswith("config/"):
            targets.append((name, config_dir / name.removeprefix("config/")))
        else:
            for prefix, root in roots:
                if name.startswith(prefix):
                    targets.append((name, root / name.removeprefix(prefix)))
                    break
    return targets


def key_instruction(recipient: str, uid: str, path: Path) -> str:
    return (f"restore the age key for recipient {recipient} (backup_uid {uid}) to {path} with mode 0600,"
            " then run 'ductile system selfcheck'")


def _key_problem(manifest: Manifest, contents: dict[str, bytes], config_dir: Path,
                 environ: Mapping[str, str]) -> str | None:
    if manifest.vault is None:
        return None
    root = _root_document(contents)
    configured = _configured(root, "secrets", "age_key_file")
    home = home_directory(environ)
    expected = resolve_path(configured, config_dir, home) if configured else config_dir / KEY_FILE_NAME
    try:
        location = locate_key(environ, expected if configured else None, config_dir, home)
        if location is not None:
            load_keyring(location.path).decrypt(contents[manifest.vault.archive_path])
            return None
    except AgeKeyError:
        pass  # a missing, unreadable or wrong key: the instruction below is what the operator needs
    return key_instruction(manifest.vault.recipient, manifest.backup_uid, expected)


def restore_archive(archive: Path, *, config_dir: Path | None, current_state_path: Callable[[], Path], force: bool,
                    environ: Mapping[str, str] | None = None) -> RestoreResult:
    """Verify, lock, check targets, then write. ``current_state_path`` gives the DB target of a
    scope ``db`` archive (the current config's ``state.path``); it is asked only for one."""
    env = os.environ if environ is None else environ
    verified = verify_archive(archive)
    manifest = verified.manifest
    target_dir = Path(os.path.abspath(config_dir)) if config_dir is not None else Path(manifest.source_config_dir)
    if manifest.scope is BackupScope.DB:
        db_target = current_state_path()
    else:
        db_target = restored_state_path(verified.contents, target_dir, env)
    lock_path = pid_path(db_target)
    try:
        lock = PidLock(lock_path).acquire()
    except PidLockHeld:
        raise RestoreError(f"gateway is running (pid {holder(lock_path) or '?'}); stop it before restoring") from None
    try:
        targets = plan_targets(verified, target_dir, db_target)
        existing = [t for _, t in targets if os.path.lexists(t)]
        if existing and not force:
            raise RestoreError(f"restore: {existing[0]} exists (use --force)")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved: list[str] = []
        for path in existing:
            aside = Path(f"{path}.pre-restore-{stamp}")
            os.replace(path, aside)
            moved.append(str(aside))
        if any(t == db_target for _, t in targets):
            for sidecar in (Path(f"{db_target}-wal"), Path(f"{db_target}-shm")):
                if sidecar.exists():  # the old DB's WAL must never be applied to the restored file
                    aside = Path(f"{sidecar}.pre-restore-{stamp}")
                    os.replace(sidecar, aside)
                    moved.append(str(aside))
        restored: list[Restored] = []
        for name, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            replace_file(target, verified.contents[name], mode=verified.modes.get(name, 0o600))
            restored.append(Restored(archive_path=name, target=str(target)))
    finally:
        lock.release()
    return RestoreResult(archive=str(archive), manifest=manifest, restored=restored, moved_aside=moved,
                         config_dir=target_dir,
                         key_problem=_key_problem(manifest, verified.contents, target_dir, env))


class FinalSelfcheck(msgspec.Struct, frozen=True):
    healthy: bool
    checks: list[dict[str, Any]]


def run_selfcheck(config_dir: Path) -> FinalSelfcheck:
    """The full ``system selfcheck`` (operations.md §5) on the restored directory: the log's chain,
    the projections replayed and compared row by row, the vault's agreement. The restore has released
    its PID lock by now, so the selfcheck takes its own."""
    import os

    import msgspec

    from ductile.system.selfcheck import offline_checks

    checks = offline_checks(None, str(config_dir), os.environ, Path.home())
    return FinalSelfcheck(healthy=all(c.ok for c in checks), checks=[msgspec.to_builtins(c) for c in checks])
