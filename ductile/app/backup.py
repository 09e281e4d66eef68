"""``system backup`` (operations.md §7): a point-in-time gzip tar, taken while the gateway runs.

The state DB is copied with ``VACUUM INTO`` on a read-only connection: SQLite gives a consistent
snapshot of a WAL database without stopping its writer. ``vault.age`` is read after the snapshot
and must be the blob the snapshot's last vault event names (or the one it replaced, after an
unlanded write); a vault write racing the backup is retried. The archive appears at ``--to`` only
complete (written beside it, then hard-linked, which never overwrites).
"""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import sqlite3
import stat
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from ductile.app.backup_manifest import (
    DB_MEMBER,
    MANIFEST_NAME,
    UID_NAME,
    BackupScope,
    Excluded,
    Manifest,
    Placed,
    VaultEntry,
    manifest_text,
    sha256_hex,
)
from ductile.commands.vault import agreement
from ductile.config.discovery import ConfigSource
from ductile.config.errors import ConfigError, raise_collected
from ductile.config.integrity import refuse_tampering
from ductile.config.loader import collect_config
from ductile.config.model import Config
from ductile.config.paths import home_directory
from ductile.events.snapshot import integrity_problems, open_readonly, vacuum_into
from ductile.events.store import NotAFileStore, require_file
from ductile.projections.replay import not_yet_built, stored_projections
from ductile.projections.vault import PROJECTION as VAULT_PROJECTION
from ductile.projections.vault import VaultState, load_state
from ductile.system.build_info import build_info
from ductile.system.pidlock import pid_path, process_records_dir
from ductile.vault.keys import AgeKeyError, load_keyring, locate_key
from ductile.vocabulary import VaultAgreement

VAULT_RETRIES = 3
UID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
PLUGIN_SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__"})
PLUGIN_SKIP_FILES = frozenset({".DS_Store"})
PLUGIN_SKIP_SUFFIXES = (".pyc", ".pyo")
NEVER_DIRS = frozenset({"backups", "secret"})
YAML_SUFFIXES = (".yaml", ".yml", ".yaml.age", ".yml.age")
# A ``token:`` whose value is written out (not empty, not a ${VAR} reference).
_LITERAL_TOKEN = re.compile(r"^\s*(?:-\s+)?token:\s*['\"]?(?!\$\{)[^\s'\"#]")

ENV_SECRETS_WARNING = "env files contain secrets: encrypt the archive at rest"
VAULT_RACED = "vault changed during backup; retry"


class BackupError(Exception):
    """A refusal: the message is the one the user reads; nothing is left at ``--to``."""


def destination_exists(path: Path) -> str:
    return f"destination already exists: {path} (refusing to overwrite)"


def literal_token_warning(name: str) -> str:
    return f"{name} contains literal API token(s): treat this archive as secret"


def external_warning(path: Path, archive: str) -> str:
    return f"config file outside the config dir: {path} (archived as {archive})"


def key_reason(recipient: str, uid: str) -> str:
    return ("age key: keep it out-of-band (password manager); vault.age restores only with the key current"
            f" at backup time (recipient {recipient or 'unknown'}, backup_uid {uid})")


class BackupResult(msgspec.Struct, frozen=True):
    manifest: Manifest
    path: Path
    size: int
    seconds: float


class Plan(msgspec.Struct, kw_only=True):
    """What the archive will hold, besides the DB snapshot and vault.age (read later, together)."""

    members: list[tuple[str, Path]]  # archive path, source file
    excluded: list[Excluded]
    plugin_roots: list[Placed]
    env_files: list[Placed]
    config_external: list[Placed]
    warnings: list[str]


class BackupConfig(msgspec.Struct, frozen=True):
    """The config a backup works from, and why it would not validate (operations.md §7: it only
    has to parse; the problems become manifest warnings)."""

    config: Config
    problems: list[str] = []


def load_for_backup(source: ConfigSource, environ: MutableMapping[str, str] | None = None) -> BackupConfig:
    """Load the config for a backup: a config that validates, else the one the loader built with
    defaults in place of the failed sections and its errors as problems. A config that does not
    even parse (no state.path to find) raises its ConfigError as every load does."""
    result = collect_config(source, environ)
    if result.config is not None:
        return BackupConfig(config=result.config)
    if result.partial is None:
        raise_collected(result.errors)
        raise ConfigError("configuration could not be loaded")  # unreachable: no config means errors
    return BackupConfig(config=result.partial, problems=[str(e) for e in result.errors])


def new_backup_uid() -> str:
    return "".join(secrets.choice(UID_ALPHABET) for _ in range(5))


def is_yaml(path: Path) -> bool:
    return path.name.endswith(YAML_SUFFIXES)


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _numbered(base: str, taken: set[str]) -> str:
    """``base``, else ``base-2``, ``base-3`` ...: the ``[-N]`` of §7 for names that collide."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _walk(root: Path, prune: Callable[[Path], bool], skip: Callable[[Path], bool]) -> Iterator[Path]:
    """Regular files under ``root`` (symlinks never followed), sorted for a stable archive."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not prune(here / d))
        for name in sorted(filenames):
            path = here / name
            if _regular(path) and not skip(path):
                yield path


def plan_backup(cfg: Config, scope: BackupScope, key_path: Path | None, also_skip: frozenset[Path]) -> Plan:
    """The members and manifest lists for ``scope`` (the ladder of §7), from the config and the disk."""
    config_dir = cfg.source.config_dir
    db = cfg.state_path
    env_paths = list(cfg.env_files)  # the loader's own list: an env file may have any name
    config_paths = [p for p in cfg.files if p not in cfg.env_files]
    never = {db, Path(f"{db}-wal"), Path(f"{db}-shm"), pid_path(db), *also_skip}
    if key_path is not None:
        never.add(key_path)
    if cfg.api.management_socket is not None:
        never.add(cfg.api.management_socket)
    if cfg.secrets.vault_file is not None:
        never.add(cfg.secrets.vault_file)  # read with the snapshot, not by the walk

    def never_file(path: Path) -> bool:
        return path in never or path.name.endswith(".rotate-new")

    members: list[tuple[str, Path]] = []
    excluded: list[Excluded] = []
    plugin_roots: list[Placed] = []
    env_files: list[Placed] = []
    external: list[Placed] = []
    warnings: list[str] = []
    sidecars = [f"{db.name}-wal", f"{db.name}-shm", pid_path(db).name, "backups"]
    if _inside(db, config_dir):
        sidecars.insert(0, db.relative_to(config_dir).as_posix())
    excluded.append(Excluded(reason="runtime sidecars / pid / nested backups dir", items=sidecars))
    if not scope.covers(BackupScope.CONFIG):
        excluded.append(Excluded(reason="scope=db < config", items=[str(config_dir)]))
    if not scope.covers(BackupScope.PLUGINS):
        excluded.append(Excluded(reason=f"scope={scope} < plugins", items=["plugin_roots"]))
    if not scope.covers(BackupScope.ALL):
        excluded.append(Excluded(reason=f"scope={scope} < all", items=["environment_vars files"]))

    if scope.covers(BackupScope.CONFIG):
        roots_inside = [r for r in cfg.plugin_roots if _inside(r, config_dir)]

        records = process_records_dir(db.parent)

        def prune(d: Path) -> bool:
            return d.name in NEVER_DIRS or d in roots_inside or d == records

        def skip(path: Path) -> bool:
            if never_file(path) or path in env_paths:
                return True
            is_env = path.name == ".env" or path.name.endswith(".env")
            return is_env and not scope.covers(BackupScope.ALL)

        for path in _walk(config_dir, prune, skip):
            members.append((f"config/{path.relative_to(config_dir).as_posix()}", path))
        for n, path in enumerate((p for p in config_paths if not _inside(p, config_dir)), start=1):
            archive = f"config-external/{n}-{path.name}"
            members.append((archive, path))
            external.append(Placed(archive_path=archive, source_path=str(path)))
            warnings.append(external_warning(path, archive))
        for _archive, path in list(members):
            if is_yaml(path) and _has_literal_token(path):
                shown = path.relative_to(config_dir).as_posix() if _inside(path, config_dir) else str(path)
                warnings.append(literal_token_warning(shown))

    if scope.covers(BackupScope.PLUGINS):
        taken: set[str] = set()
        for root in cfg.plugin_roots:
            base = f"plugins/{_numbered(root.name, taken)}"
            plugin_roots.append(Placed(archive_path=base, source_path=str(root)))

            def prune_plugin(d: Path) -> bool:
                return d.name in PLUGIN_SKIP_DIRS

            def skip_plugin(path: Path) -> bool:
                return (never_file(path) or path.name in PLUGIN_SKIP_FILES
                        or path.name.endswith(PLUGIN_SKIP_SUFFIXES))

            for path in _walk(root, prune_plugin, skip_plugin):
                members.append((f"{base}/{path.relative_to(root).as_posix()}", path))

    if scope.covers(BackupScope.ALL):
        taken = set()
        for path in env_paths:
            if not path.is_file():
                warnings.append(f"env file not found: {path}")
                continue
            archive = f"env/{_numbered(path.parent.name, taken)}/{path.name}"
            members.append((archive, path))
            env_files.append(Placed(archive_path=archive, source_path=str(path)))
        if env_files:
            warnings.append(ENV_SECRETS_WARNING)
    return Plan(members=members, excluded=excluded, plugin_roots=plugin_roots, env_files=env_files,
                config_external=external, warnings=warnings)


def _has_literal_token(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return any(_LITERAL_TOKEN.match(line) for line in text.splitlines())


class Snapshot(msgspec.Struct, frozen=True):
    path: Path
    sha256: str
    vault_blob: bytes | None
    vault_mode: int


def _snapshot_once(cfg: Config, target: Path) -> tuple[bool, Snapshot]:
    """One snapshot and one read of vault.age; False when they do not agree (a write raced us)."""
    try:
        vacuum_into(cfg.state_path, target)
        conn = open_readonly(target)
        try:
            problems = integrity_problems(conn)
            if problems:
                raise BackupError(f"state database snapshot failed its integrity check: {'; '.join(problems)}")
            state = _vault_state(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"state database snapshot failed: {exc}") from None
    digest = sha256_hex(target.read_bytes())
    vault = cfg.secrets.vault_file
    blob: bytes | None = None
    mode = 0o600
    if vault is not None and _regular(vault):
        blob = vault.read_bytes()
        mode = stat.S_IMODE(os.stat(vault).st_mode)
    agrees = True
    if blob is not None:
        agrees = agreement(state, sha256_hex(blob)) in (
            VaultAgreement.AGREE, VaultAgreement.UNLANDED_WRITE, VaultAgreement.NOT_ADOPTED)
    return agrees, Snapshot(path=target, sha256=digest, vault_blob=blob, vault_mode=mode)


def _vault_state(conn: sqlite3.Connection) -> VaultState:
    """The snapshot's vault state; empty for a database of a release before the vault, which its
    first start on this release has not yet built (such a log holds no vault event)."""
    stored = stored_projections(conn)
    if VAULT_PROJECTION.name in not_yet_built(conn, stored, [VAULT_PROJECTION]):
        return VaultState()
    return load_state(conn.cursor())


def _key(cfg: Config, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """The age key's path (never archived) and its recipient (for the pairing note)."""
    try:
        location = locate_key(environ, cfg.secrets.age_key_file, cfg.source.config_dir, home_directory(environ))
    except AgeKeyError:
        return None, ""
    if location is None:
        return None, ""
    try:
        recipients = load_keyring(location.path).recipients
    except AgeKeyError:
        return location.path, ""
    return location.path, recipients[0] if recipients else ""


def _tarinfo(name: str, size: int, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = int(mtime)
    info.uname = info.gname = ""
    return info


def _unique_temp(directory: Path, prefix: str, suffix: str) -> Path:
    return directory / f"{prefix}{secrets.token_hex(6)}{suffix}"


def create_backup(
    cfg: Config,
    destination: Path,
    scope: BackupScope,
    *,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    problems: list[str] | None = None,
) -> BackupResult:
    """Write the archive for ``scope`` at ``destination`` (which must not exist). ``problems``
    are the config's validation errors (``load_for_backup``): recorded as warnings, never fatal."""
    started = time.perf_counter()
    env = os.environ if environ is None else environ
    dest = Path(os.path.abspath(destination))
    if os.path.lexists(dest):
        raise BackupError(destination_exists(dest))
    try:
        require_file(cfg.store(), "system backup", "use pg_dump (docs/postgresql.md)")
    except NotAFileStore as exc:
        raise BackupError(str(exc)) from None
    if not cfg.state_path.is_file():
        raise BackupError(f"state database {cfg.state_path} not found")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, recipient = _key(cfg, env)
    uid = new_backup_uid()
    snapshot_path = _unique_temp(dest.parent, ".ductile-snapshot-", ".sqlite")
    temp = _unique_temp(dest.parent, f".{dest.name}.", ".tmp")
    plan = plan_backup(cfg, scope, key_path, frozenset({dest, temp, snapshot_path}))
    warnings = list(plan.warnings)
    try:
        refuse_tampering(cfg.files, cfg.source.config_dir)
    except ConfigError as exc:
        warnings.insert(0, str(exc))
    warnings[:0] = problems or []
    warnings.extend(w.message for w in cfg.warnings)
    try:
        snap = _take_snapshot(cfg, snapshot_path)
        manifest = _write_archive(cfg, scope, plan, snap, temp, uid, recipient, key_path, warnings, progress)
        try:
            os.link(temp, dest)
        except FileExistsError:
            raise BackupError(destination_exists(dest)) from None
        size = dest.stat().st_size
    finally:
        for leftover in (temp, snapshot_path):
            leftover.unlink(missing_ok=True)
    return BackupResult(manifest=manifest, path=dest, size=size, seconds=round(time.perf_counter() - started, 3))


def _take_snapshot(cfg: Config, target: Path) -> Snapshot:
    for _ in range(1 + VAULT_RETRIES):
        target.unlink(missing_ok=True)
        agrees, snap = _snapshot_once(cfg, target)
        if agrees:
            return snap
    raise BackupError(VAULT_RACED)


def _write_archive(cfg: Config, scope: BackupScope, plan: Plan, snap: Snapshot, temp: Path, uid: str,
                   recipient: str, key_path: Path | None, warnings: list[str],
                   progress: Callable[[int, int], None] | None) -> Manifest:
    files: dict[str, str] = {}
    external = list(plan.config_external)
    now = time.time()
    total = len(plan.members) + 3
    done = 0
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw:
        tar = tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed below

        def add(name: str, data: bytes, mode: int, mtime: float) -> None:
            nonlocal done
            tar.addfile(_tarinfo(name, len(data), mode, mtime), io.BytesIO(data))
            if name != MANIFEST_NAME:
                files[name] = sha256_hex(data)
            done += 1
            if progress is not None:
                progress(done, total)

        add(UID_NAME, f"{uid}\n".encode(), 0o644, now)
        add(DB_MEMBER, snap.path.read_bytes(), 0o600, now)
        vault: VaultEntry | None = None
        if snap.vault_blob is not None and scope.covers(BackupScope.CONFIG) and cfg.secrets.vault_file is not None:
            archive = _vault_archive_path(cfg)
            add(archive, snap.vault_blob, snap.vault_mode, now)
            vault = VaultEntry(archive_path=archive, recipient=recipient, sha256=files[archive])
            if not archive.startswith("config/"):
                # Outside the config dir: restore puts it back at its recorded path (§8 Targets).
                external.append(Placed(archive_path=archive, source_path=str(cfg.secrets.vault_file)))
                warnings.append(external_warning(cfg.secrets.vault_file, archive))
        for name, path in plan.members:
            st = os.stat(path)
            add(name, path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime)
        excluded = list(plan.excluded)
        if key_path is not None:
            excluded.insert(0, Excluded(reason=key_reason(recipient, uid), items=[str(key_path)]))
        info = build_info()
        manifest = Manifest(
            ductile_version=info["version"], ductile_commit=info["commit"], hostname=socket.gethostname(),
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), scope=scope, backup_uid=uid,
            source_db_path=str(cfg.state_path), source_db_sha256=snap.sha256,
            source_config_dir=str(cfg.source.config_dir), included=sorted([*files, MANIFEST_NAME]),
            files=dict(sorted(files.items())), vault=vault, excluded=excluded, plugin_roots=plan.plugin_roots,
            env_files=plan.env_files, config_external=external, warnings=warnings,
        )
        add(MANIFEST_NAME, manifest_text(manifest).encode(), 0o644, now)
        tar.close()  # writes the gzip trailer; the archive is complete only after it
        raw.flush()
        os.fsync(raw.fileno())
    return manifest


def _vault_archive_path(cfg: Config) -> str:
    vault = cfg.secrets.vault_file
    assert vault is not None
    config_dir = cfg.source.config_dir
    if _inside(vault, config_dir):
        return f"config/{vault.relative_to(config_dir).as_posix()}"
    return f"config-external/vault-{vault.name}"
