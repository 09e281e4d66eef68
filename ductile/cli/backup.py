"""``ductile system backup`` and ``ductile system restore`` (operations.md §7–8, cli.md §2.2)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from ductile.cli.output import emit_json, fail

if TYPE_CHECKING:
    from ductile.config.model import Config

BACKUP_USAGE = "usage: ductile system backup --to FILE.tar.gz [--scope db|config|plugins|all] [--config…] [--json]"
RESTORE_USAGE = "usage: ductile system restore --from FILE.tar.gz [--config-dir D] [--force] [--json]"

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]


def backup(
    *,
    to: Annotated[str | None, Parameter(name="--to", help="The archive to write (FILE.tar.gz); must not exist.")] = None,
    scope: Annotated[str | None, Parameter(help="db|config|plugins|all (default config).")] = None,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    json: bool = False,
) -> int:
    """Snapshot the state DB (and config, plugins, env files by scope) into one gzip tar, gateway running or not."""
    from ductile.app.backup import BackupError, create_backup, load_for_backup
    from ductile.app.backup_manifest import UnknownScope, parse_scope
    from ductile.cli.common import find_source
    from ductile.cli.output import CliFailure
    from ductile.cli.progress import progress_bar
    from ductile.config.errors import ConfigError

    if not to:
        print(BACKUP_USAGE, file=sys.stderr)
        raise fail("system backup: --to is required", json=json)
    try:
        chosen = parse_scope(scope)
    except UnknownScope as exc:
        raise fail(str(exc), json=json) from None
    try:
        loaded = load_for_backup(find_source(config, config_dir))
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None
    bar = progress_bar("backing up", json=json, unit="files")
    try:
        result = create_backup(loaded.config, Path(to), chosen, progress=bar, problems=loaded.problems)
    except BackupError as exc:
        raise fail(str(exc), json=json) from None
    finally:
        if bar is not None:
            bar.close()
    manifest = result.manifest
    if json:
        emit_json(manifest)
        return 0
    print(f"INCLUDED (scope={manifest.scope}):")
    for item in manifest.included:
        print(f"  + {item}")
    print()
    print("EXCLUDED:")
    for group in manifest.excluded:
        print(f"  - {group.reason}")
        for item in group.items:
            print(f"      {item}")
    for warning in manifest.warnings:
        print(f"WARNING: {warning}")
    print(f"backup written: {result.path} ({result.size} bytes, {result.seconds}s)")
    return 0


def restore(
    *,
    from_: Annotated[str | None, Parameter(name="--from", help="The archive to restore (FILE.tar.gz).")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir",
                                                help="Where the config goes (default: the archived config dir).")] = None,
    force: Annotated[bool, Parameter(help="Move existing files aside (<path>.pre-restore-<UTC ts>) and restore.")] = False,
    json: bool = False,
) -> int:
    """Verify a backup archive whole, put it back (gateway stopped), then run the selfcheck."""
    import msgspec

    from ductile.app.restore import RestoreError, restore_archive, run_selfcheck
    from ductile.cli.common import resolve

    if not from_:
        print(RESTORE_USAGE, file=sys.stderr)
        raise fail("system restore: --from is required", json=json)
    archive = Path(from_)
    try:
        result = restore_archive(archive, config_dir=Path(config_dir) if config_dir else None,
                                 current_state_path=lambda: _state_file(resolve(None, config_dir)), force=force)
    except RestoreError as exc:
        raise fail(exc.message, json=json) from None
    check = run_selfcheck(result.config_dir)
    ok = check.healthy and result.key_problem is None
    if json:
        document: dict[str, object] = {
            "archive": result.archive, "restored": msgspec.to_builtins(result.restored),
            "moved_aside": result.moved_aside, "selfcheck": {"healthy": check.healthy, "checks": check.checks}}
        if result.key_problem is not None:
            document["error"] = result.key_problem
        emit_json(document)
    else:
        for moved in result.moved_aside:
            print(f"moved aside: {moved}")
        print(f"restored {len(result.restored)} file(s) from {result.archive}")
        print(f"Selfcheck: {'PASS' if check.healthy else 'FAIL'}")
        for c in check.checks:
            status = {"ok": "OK", "fail": "FAIL", "skipped": "SKIP"}[c["status"]]
            print(f"- {c['name']}: {status}" + (f" - {c['detail']}" if c.get("detail") else ""))
    if result.key_problem is not None:
        print(f"error: {result.key_problem}", file=sys.stderr)
    return 0 if ok else 1



def _state_file(cfg: Config) -> Path:
    """The current config's state DB, the target of a ``db`` scope restore (a file only)."""
    from ductile.app.restore import RestoreError
    from ductile.events.store import NotAFileStore, require_file

    try:
        return require_file(cfg.store(), "system restore", "restore the database with pg_restore")
    except NotAFileStore as exc:
        raise RestoreError(str(exc)) from None
