"""System routes: ``/topology``, ``/config/view``, ``/system/doctor``, ``/system/selfcheck`` and
``POST /system/reload`` (api.md §3, §4.7, §4.8; operations.md §5–§6)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import Request, get, post

import ductile
from ductile.api.auth import require
from ductile.api.context import services_of
from ductile.api.errors import ApiError, internal
from ductile.config.model import Config
from ductile.config.redaction import REDACTED, display_document, redact
from ductile.events.log import verify_chain
from ductile.events.read_pool import fetch_value
from ductile.events.timefmt import NS, now_ns, rfc3339
from ductile.formats.yaml12 import YamlError, parse_document
from ductile.projections.registry import ALL as PROJECTIONS
from ductile.runtime.catalog import Catalog, LoadedPlugin
from ductile.runtime.services import Services
from ductile.vocabulary import TERMINAL_SQL

if TYPE_CHECKING:
    import aiosqlite

SYSTEM_READ = ("system:ro", "system:rw")
MANIFEST_FILE = "manifest.yaml"
LOW_DISK_BYTES = 1 << 30
PLUGIN_VIEW_KEYS = ("enabled", "uses", "schedules", "config", "retry", "timeouts", "circuit_breaker", "parallelism",
                    "notify_on_complete")
SECRETS_PATH_KEYS = ("age_key_file", "vault_file")


def _auth(request: Request[Any, Any, Any], *scopes: str) -> Services:
    require(request.app.state.tokens, request.headers.get("authorization"), *scopes)
    return services_of(request)


# --- topology ------------------------------------------------------------------------------------

_emit_cache: dict[Path, tuple[int, list[tuple[str, str]]]] = {}


def manifest_emits(directory: Path) -> list[tuple[str, str]]:
    """``(signal, command)`` for each ``values.emit`` entry of the plugin's manifest.

    The loaded ``Manifest`` does not keep ``values``, so the file is read again (cached by mtime).
    """
    path = directory / MANIFEST_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return []
    cached = _emit_cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    found: list[tuple[str, str]] = []
    try:
        doc = parse_document(path.read_bytes(), refuse_duplicate_keys=False).value
    except (OSError, YamlError):
        # It parsed at discovery; one edited since into bad YAML shows no emits until the next
        # reload, which reports the error.
        doc = None
    commands = doc.get("commands") if isinstance(doc, dict) else None
    for cmd in commands if isinstance(commands, list) else []:
        if not isinstance(cmd, dict) or not isinstance(cmd.get("name"), str):
            continue
        values = cmd.get("values")
        emit = values.get("emit") if isinstance(values, dict) else None
        for entry in emit if isinstance(emit, list) else []:
            event = entry.get("event") if isinstance(entry, dict) else None
            if isinstance(event, str) and event.strip():
                found.append((event.strip(), cmd["name"]))
    _emit_cache[path] = (mtime, found)
    return found


def _emits(loaded: LoadedPlugin) -> list[tuple[str, str]]:
    declared = [(e, c.name) for c in loaded.manifest.commands for e in getattr(c, "emits", None) or ()]
    return declared or manifest_emits(loaded.directory)


def pipeline_entry_plugins(pipeline: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> list[str]:
    """The plugins of a pipeline's entry nodes (a ``uses`` step always runs ``handle``)."""

    def entries(steps: Any, seen: frozenset[str]) -> list[str]:
        if not isinstance(steps, list) or not steps or not isinstance(steps[0], dict):
            return []
        first = steps[0]
        if isinstance(first.get("uses"), str):
            return [first["uses"].strip().removesuffix(".handle")]
        if "steps" in first:
            return entries(first["steps"], seen)
        if isinstance(first.get("split"), list):
            return [p for branch in first["split"] for p in entries([branch], seen)]
        called = first.get("call")
        if isinstance(called, str) and called in by_name and called not in seen:
            return entries(by_name[called].get("steps"), seen | {called})
        return []  # relay: a core pseudo-plugin, not a consumer

    name = pipeline.get("name")
    return entries(pipeline.get("steps"), frozenset({name}) if isinstance(name, str) else frozenset())


def topology(config: Config, catalog: Catalog, emits: dict[str, list[tuple[str, str]]], now: int) -> dict[str, Any]:
    pipelines = [p for p in config.pipelines if isinstance(p, dict)]
    by_name = {p["name"]: p for p in pipelines if isinstance(p.get("name"), str)}
    inputs: dict[str, set[tuple[str, str]]] = {}
    producers: dict[str, set[tuple[str, str]]] = {}
    consumers: dict[str, set[tuple[str, str]]] = {}
    for p in pipelines:
        signal = p.get("on")
        if not isinstance(signal, str) or not signal.strip():
            continue
        signal = signal.strip()
        consumers.setdefault(signal, set())
        for plugin in pipeline_entry_plugins(p, by_name):
            inputs.setdefault(plugin, set()).add((signal, "handle"))
            consumers[signal].add((plugin, "handle"))
    for plugin, pairs in emits.items():
        for signal, command in pairs:
            producers.setdefault(signal, set()).add((plugin, command))
    plugins = []
    for name in sorted(set(config.plugins) | set(catalog.plugins)):
        loaded = catalog.get(name)
        entry: dict[str, Any] = {"name": name}
        if loaded is not None and loaded.manifest.version:
            entry["version"] = loaded.manifest.version
        entry["active"] = loaded is not None
        entry["inputs"] = [{"signal": s, "command": c} for s, c in sorted(inputs.get(name, ()))]
        entry["outputs"] = [{"signal": s, "command": c} for s, c in sorted(set(emits.get(name, ())))]
        plugins.append(entry)
    signals = [
        {
            "name": s,
            "producers": [{"plugin": p, "command": c} for p, c in sorted(producers.get(s, ()))],
            "consumers": [{"plugin": p, "command": c} for p, c in sorted(consumers.get(s, ()))],
        }
        for s in sorted(set(producers) | set(consumers))
    ]
    return {"version": ductile.__version__, "captured_at": rfc3339(now), "plugins": plugins, "signals": signals}


@get("/topology")
async def get_topology(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _auth(request, *SYSTEM_READ)
    catalog = svc.catalog
    emits = await asyncio.to_thread(lambda: {n: _emits(p) for n, p in catalog.plugins.items()})
    return topology(svc.config, catalog, emits, now_ns())


# --- config view -----------------------------------------------------------------------------------


def _tokens_view(tokens: Any) -> list[dict[str, Any]]:
    out = []
    for t in tokens if isinstance(tokens, list) else []:
        if not isinstance(t, dict):
            continue
        entry: dict[str, Any] = {}
        if t.get("secret_ref") is not None:
            entry["secret_ref"] = t["secret_ref"]
        entry["scopes"] = list(t.get("scopes") or [])
        out.append(entry)
    return out


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """Belt and braces: no literal token value survives anywhere, whatever key holds it."""
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return REDACTED
    return value


def config_view(config: Config, pipelines: Mapping[str, Any] | None = None) -> dict[str, Any]:
    raw = display_document(config)
    api = dict(raw.get("api") or {})
    if isinstance(api.get("auth"), dict):
        api["auth"] = {**api["auth"], "tokens": _tokens_view(api["auth"].get("tokens"))}
    plugins = {}
    for name, entry in (raw.get("plugins") or {}).items():
        given = entry if isinstance(entry, dict) else {}
        shown: dict[str, Any] = {"enabled": bool(given.get("enabled", False))}
        shown.update({k: given[k] for k in PLUGIN_VIEW_KEYS[1:] if given.get(k) is not None})
        plugins[name] = shown
    secrets = raw.get("secrets") or {}
    view = {
        "service": raw.get("service") or {},
        "state": raw.get("state") or raw.get("database") or {},
        "secrets": {k: secrets[k] for k in SECRETS_PATH_KEYS if isinstance(secrets, dict) and k in secrets},
        "plugin_roots": raw.get("plugin_roots") or [],
        "api": api,
        "plugins": plugins,
        "pipelines": raw.get("pipelines") or [],
        "webhooks": raw.get("webhooks") or {},
        "instances": raw.get("instances") or [],
        "remote_ingress": raw.get("remote_ingress") or {},
        "compiled_routes": {name: p.routes() for name, p in sorted((pipelines or {}).items())},
    }
    literal = tuple(t.token for t in config.api.tokens if t.token)
    return _scrub(redact(view), literal)


@get("/config/view")
async def get_config_view(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _auth(request, *SYSTEM_READ)
    return config_view(svc.config, svc.pipelines)


# --- doctor ------------------------------------------------------------------------------------------


def _check(name: str, ok: bool, severity: str | None = None, detail: str | None = None,
           field: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "ok": ok}
    for key, value in (("severity", severity), ("detail", detail), ("field", field)):
        if value is not None:
            out[key] = value
    return out


async def doctor_checks(config: Config, catalog: Catalog, conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    checks = [
        _check("config", False, "error" if w.level == "error" else "warning", w.message, w.field or None)
        for w in config.warnings
    ]
    checks.extend(
        _check("plugins", False, "error" if p.level == "error" else "warning", p.message, p.field)
        for p in catalog.problems
    )
    checks.append(_check("plugins", True, detail=f"{len(catalog.plugins)} plugin(s) loaded"))
    for name, loaded in sorted(catalog.plugins.items()):
        if not os.access(loaded.entrypoint, os.X_OK):
            checks.append(_check("plugins", False, "error", f'plugin "{name}": entrypoint is not executable',
                                 f"plugins.{name}"))
    if config.service.durability == "normal":
        checks.append(_check("durability", False, "warning",
                             "service.durability is normal: a power loss may drop the last commits",
                             "service.durability"))
    try:
        head = await fetch_value(conn, "SELECT COALESCE(MAX(position), 0) FROM events")
        checks.append(_check("state_db", True, detail=f"event log head {head}"))
    except sqlite3.Error as exc:
        checks.append(_check("state_db", False, "error", f"state DB not readable: {exc}", "state.path"))
    try:
        free = shutil.disk_usage(config.state_path.parent).free
        low = free < LOW_DISK_BYTES
        checks.append(_check("disk_space", not low, "warning" if low else None,
                             f"{free // (1 << 20)} MiB free in {config.state_path.parent}"))
    except OSError as exc:
        checks.append(_check("disk_space", False, "warning", f"cannot read free space: {exc}"))
    checks.append(_check("gateway", True, detail=f"running (pid {os.getpid()})"))
    return checks


@get("/system/doctor")
async def system_doctor(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _auth(request, *SYSTEM_READ)
    try:
        checks = await svc.read(lambda c: doctor_checks(svc.config, svc.catalog, c))
    except Exception as exc:
        raise internal("doctor run failed", exc) from None
    return {"ok": not any(c.get("severity") == "error" for c in checks), "captured_at": rfc3339(now_ns()),
            "checks": checks}


# --- selfcheck -------------------------------------------------------------------------------------


def _status(name: str, ok: bool | None, detail: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "ok": bool(ok), "status": "skipped" if ok is None else ("ok" if ok else "fail")}
    if detail:
        out["detail"] = detail
    return out


def _chain_check(conn: sqlite3.Connection) -> dict[str, Any]:
    report = verify_chain(conn)
    if not report.ok:
        return _status("event_log_chain", False, f"{report.problem} (first bad position {report.position})")
    bad = conn.execute(
        "SELECT stream, MIN(version), MAX(version), COUNT(*) FROM events GROUP BY stream"
        " HAVING MIN(version) != 1 OR MAX(version) != COUNT(*) LIMIT 1"
    ).fetchone()
    if bad is not None:
        return _status("event_log_chain", False,
                       f"stream {bad[0]!r} versions are not contiguous ({bad[3]} events, {bad[1]}..{bad[2]})")
    return _status("event_log_chain", True, f"{report.events} events, head {report.head}")


def _checkpoint_check(conn: sqlite3.Connection, head: int, names: Iterable[str]) -> dict[str, Any]:
    stored = dict(conn.execute("SELECT name, position FROM projections").fetchall())
    behind = [f"{n} at {stored.get(n, 'missing')}" for n in names if stored.get(n) != head]
    if behind:
        return _status("projection_checkpoints", False, f"head {head}; behind: " + ", ".join(behind))
    return _status("projection_checkpoints", True, f"all at head {head}")


def _freshness_check(conn: sqlite3.Connection, config: Config) -> dict[str, Any]:
    newest = conn.execute("SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1").fetchone()
    if newest is None:
        return _status("queue_terminal_freshness", True, "empty event log")
    if config.service.job_queue_retention <= 0:
        return _status("queue_terminal_freshness", True, "job_queue_retention disabled")
    limit = int((config.service.job_queue_retention + 2 * config.service.tick_interval) * NS)
    count, oldest = conn.execute(
        "SELECT COUNT(*), MIN(completed_at) FROM job_queue"
        f" WHERE status IN {TERMINAL_SQL} AND completed_ns < ?",
        (newest[0] - limit,),
    ).fetchone()
    if count:
        return _status("queue_terminal_freshness", False, f"{count} stale terminal queue row(s), oldest {oldest}")
    return _status("queue_terminal_freshness", True)


def _unreadable(detail: str) -> list[dict[str, Any]]:
    skipped = ("event_log_chain", "projection_checkpoints", "queue_terminal_freshness")
    return [_status("state_db", False, detail), *(_status(n, None, "state DB not readable") for n in skipped)]


def selfcheck_checks(open_reader: Callable[[], sqlite3.Connection], config: Config) -> list[dict[str, Any]]:
    """The online checks, all on one read snapshot of the state DB."""
    try:
        conn = open_reader()
    except sqlite3.Error as exc:
        return _unreadable(f"cannot open the state DB read-only: {exc}")
    try:
        conn.execute("BEGIN")
        head = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
        checks = [_status("state_db", True, f"readable, event log head {head}")]
        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("event_log_chain", lambda: _chain_check(conn)),
            ("projection_checkpoints", lambda: _checkpoint_check(conn, head, [p.name for p in PROJECTIONS])),
            ("queue_terminal_freshness", lambda: _freshness_check(conn, config)),
        ]
        for name, run in runs:
            try:
                checks.append(run())
            except sqlite3.Error as exc:
                checks.append(_status(name, False, f"read failed: {exc}"))
        return checks
    except sqlite3.Error as exc:
        return _unreadable(f"state DB not readable: {exc}")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


@get("/system/selfcheck")
async def system_selfcheck(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _auth(request, *SYSTEM_READ)
    state = request.app.state
    if state.get("selfcheck_running", False):
        raise ApiError(409, "selfcheck already running")
    state.selfcheck_running = True
    try:
        checks = await asyncio.to_thread(selfcheck_checks, svc.events.reader, svc.config)
    except Exception as exc:
        raise internal("selfcheck run failed", exc) from None
    finally:
        state.selfcheck_running = False
    return {"healthy": all(c["ok"] for c in checks), "captured_at": rfc3339(now_ns()), "checks": checks}


# --- reload --------------------------------------------------------------------------------------------


@post("/system/reload", status_code=200)
async def system_reload(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _auth(request, "system:rw")
    raise ApiError(501, "config reload is not available in this version")
