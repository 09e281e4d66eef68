"""``ductile system doctor`` and ``GET /system/doctor`` (operations.md §6): everything ``config
check`` reports, plus what an operator asks next: which plugins loaded and which are configured but
off, each schedule's next fire, the age key and vault, a leftover staged key, the management socket,
free disk, durability, the event-log head and whether the gateway runs.

Read-only, gateway running or not: files are read, the state DB is opened read-only, the PID lock
is only probed. The findings use ``config check``'s report, so both print and exit alike; the
``info`` level reports what is there and never fails a run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import MutableMapping
from pathlib import Path

from ductile.app.vault import vault_status
from ductile.commands.schedule_plan import first_slot
from ductile.config.api import MAX_SOCKET_PATH_BYTES
from ductile.config.discovery import ConfigSource
from ductile.config.model import Config
from ductile.config.paths import home_directory
from ductile.events.record import read_head
from ductile.events.schema import UnknownSchema, ensure_schema, has_tables
from ductile.events.sqlite_store import EmptyStateDatabase, connect, refuse_empty_state_file
from ductile.events.store import EventStore, read_with
from ductile.events.timefmt import now_ns, rfc3339
from ductile.projections.schedules import planned_runs
from ductile.runtime.catalog import Catalog
from ductile.runtime.config_check import Finding, Level, Report, run_checks
from ductile.runtime.scheduler import load_specs
from ductile.system.pidlock import holder, pid_path
from ductile.vault.rotation import STAGED_SUFFIX

LOW_DISK_BYTES = 1 << 30  # §6: under 1 GiB free in the state dir is a warning
DURABILITY_NORMAL = "service.durability is normal: a power loss may drop the last commits"
NOT_CONFIGURED = 'plugin "{name}" is discovered but not configured under plugins: it never runs'
LEFTOVER_STAGED_KEY = ("leftover {path} from an interrupted 'vault rotate-key': re-run it to finish, "
                       "or remove the file")
SOCKET_TOO_LONG = "management socket path {path} is {n} bytes (max {max}): the socket cannot be created"
LOW_DISK = "{free} MiB free in {dir} (below 1 GiB)"
GATEWAY_RUNNING = "gateway running (pid {pid})"
GATEWAY_NOT_RUNNING = "gateway not running"


def doctor_report(source: ConfigSource, environ: MutableMapping[str, str] | None = None,
                  home: Path | None = None, *, now: int | None = None) -> Report:
    """``config check``'s findings followed by §6's operational ones."""
    env = dict(os.environ) if environ is None else environ
    checked = run_checks(source, env, home)
    findings = list(checked.report.findings)
    if checked.config is not None:
        at = now_ns() if now is None else now
        if checked.catalog is not None:
            findings += plugin_findings(checked.config, checked.catalog, checked.discovered)
            findings += schedule_findings(checked.config, checked.catalog, at)
        findings += vault_findings(checked.config, env, home or home_directory(env))
        findings += state_findings(checked.config)
    return Report(findings)


def _info(category: str, field: str, message: str) -> Finding:
    return Finding(level=Level.INFO, category=category, field=field, message=message)


def plugin_findings(config: Config, catalog: Catalog, discovered: frozenset[str]) -> list[Finding]:
    loaded = sorted(catalog.plugins)
    out = [_info("plugins", "plugin_roots", f"{len(loaded)} plugin(s) loaded" + (f": {', '.join(loaded)}" if loaded else ""))]
    # Discovery's own notes (config check) already report the rest of §6's discovery report: a
    # directory without manifest.yaml, a duplicate kept-first, a manifest that failed and why (an
    # entrypoint that is not executable among them); the catalog warns of a disabled plugin.
    configured_bases = set(config.plugins) | {p.base for p in catalog.plugins.values()}
    for name in sorted(discovered - configured_bases):
        out.append(_info("plugins", "plugins", NOT_CONFIGURED.format(name=name)))
    return out


def schedule_findings(config: Config, catalog: Catalog, now: int) -> list[Finding]:
    """Each valid entry's next fire: the stored plan when the gateway has run, else the first slot
    a start now would plan (before jitter)."""
    specs, _ = load_specs(config, catalog)  # their warnings are config check's
    planned: dict[tuple[str, str], int] = {}
    store = config.store()
    if specs and store.exists():
        try:
            planned = read_with(store, planned_runs)
        except store.errors:
            planned = {}  # state_findings reports an unreadable DB once
    out: list[Finding] = []
    for spec in specs:
        if not spec.valid:
            continue  # config check's error names it
        field = f"plugins.{spec.plugin}.schedules[{spec.index}]"
        stored = planned.get((spec.plugin, spec.id))
        when = stored if stored is not None else first_slot(spec, now, now)
        source = "planned" if stored is not None else "at the next start"
        out.append(_info("schedules", field, f'plugin "{spec.plugin}": schedule "{spec.id}" ({spec.command}): '
                                             f"next fire {rfc3339(when)} ({source})"))
    return out


def vault_findings(config: Config, environ: MutableMapping[str, str], home: Path) -> list[Finding]:
    status, _ = vault_status(config, environ, home)
    out: list[Finding] = []
    key_path = status["key_path"]
    if key_path is None:
        out.append(_info("vault", "secrets.age_key_file", "no age key found"))
    else:
        out.append(_info("vault", "secrets.age_key_file", f"age key {key_path} (mode {status['key_mode']})"))
        staged = Path(f"{key_path}{STAGED_SUFFIX}")
        if staged.exists():
            out.append(Finding(level=Level.WARNING, category="vault", field="secrets.age_key_file",
                               message=LEFTOVER_STAGED_KEY.format(path=staged)))
    if status["exists"]:
        out.append(_info("vault", "secrets.vault_file",
                         f"vault {status['vault_path']}: {status['recipients']} recipient(s)"))
    else:
        out.append(_info("vault", "secrets.vault_file", f"no vault at {status['vault_path']}"))
    socket = config.api.management_socket
    if socket is not None:
        size = len(str(socket).encode())
        if size > MAX_SOCKET_PATH_BYTES:
            out.append(Finding(level=Level.WARNING, category="management_socket", field="api.management_socket",
                               message=SOCKET_TOO_LONG.format(path=socket, n=size, max=MAX_SOCKET_PATH_BYTES)))
        else:
            out.append(_info("management_socket", "api.management_socket", f"{socket} ({size} bytes)"))
    return out


def state_findings(config: Config) -> list[Finding]:
    """Disk, durability, the event-log head and the gateway (the lock holder)."""
    out: list[Finding] = []
    state_dir = config.state_path.parent
    try:
        free = shutil.disk_usage(state_dir if state_dir.exists() else _existing_parent(state_dir)).free
        level = Level.WARNING if free < LOW_DISK_BYTES else Level.INFO
        text = LOW_DISK if level is Level.WARNING else "{free} MiB free in {dir}"
        out.append(Finding(level=level, category="disk_space", field="state.path",
                           message=text.format(free=free >> 20, dir=state_dir)))
    except OSError as exc:
        out.append(Finding(level=Level.WARNING, category="disk_space", field="state.path",
                           message=f"cannot read free space in {state_dir}: {exc}"))
    if config.service.durability == "normal":
        out.append(Finding(level=Level.WARNING, category="durability", field="service.durability",
                           message=DURABILITY_NORMAL))
    store = config.store()
    out.append(_state_db(config.state_path) if store.file is not None else _state_server(store))
    pid = holder(pid_path(config.state_path))
    message = GATEWAY_NOT_RUNNING if pid is None else GATEWAY_RUNNING.format(pid=pid if pid > 0 else "unknown")
    out.append(_info("gateway", "state.path", message))
    return out


def _state_server(store: EventStore) -> Finding:
    """``state.url``: the log's head on the server (its schema is checked when the gateway opens it)."""
    try:
        head = read_with(store, read_head)
    except store.errors as exc:
        return Finding(level=Level.ERROR, category="state_db", field="state.url",
                       message=f"event store {store.location} cannot be read: {exc}")
    return _info("state_db", "state.url", f"event log head {head} ({store.location})")


def _state_db(path: Path) -> Finding:
    if not path.exists():
        return _info("state_db", "state.path", f"state database {path} does not exist yet (created at the first start)")
    try:
        refuse_empty_state_file(path)
        conn = connect(path, readonly=True)
        try:
            if not has_tables(conn):
                return _info("state_db", "state.path", f"state database {path} has no event log yet")
            ensure_schema(conn, str(path))  # only reads when tables exist: refuses a foreign or newer DB
            head = read_head(conn)
        finally:
            conn.close()
    except (EmptyStateDatabase, UnknownSchema) as exc:
        return Finding(level=Level.ERROR, category="state_db", field="state.path", message=str(exc))
    except sqlite3.Error as exc:
        return Finding(level=Level.ERROR, category="state_db", field="state.path",
                       message=f"state database {path} cannot be read: {exc}")
    return _info("state_db", "state.path", f"event log head {head} ({path})")


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
