"""System routes: ``/topology``, ``/config/view``, ``/system/doctor``, ``/system/selfcheck`` and
``POST /system/reload`` (api.md §3, §4.7, §4.8; operations.md §5–§6)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ductile import __version__
from ductile.api.auth import scopes
from ductile.api.context import Facade
from ductile.api.errors import ApiError, internal
from ductile.api.handlers import get, post
from ductile.api.schemas import errors
from ductile.app.reload import ReloadStatus
from ductile.config.model import Config, WebhooksConfig
from ductile.config.redaction import REDACTED, display_document, redact
from ductile.events.timefmt import now_ns, rfc3339
from ductile.formats.durations import format_duration
from ductile.formats.yaml12 import YamlError, parse_document
from ductile.runtime.catalog import Catalog, LoadedPlugin
from ductile.runtime.config_check import Finding, Level
from ductile.runtime.doctor import doctor_report
from ductile.system.selfcheck import SelfcheckCheck

SYSTEM_READ = scopes("system:ro", "system:rw")
MANIFEST_FILE = "manifest.yaml"
PLUGIN_VIEW_KEYS = ("enabled", "uses", "schedules", "config", "retry", "timeouts", "circuit_breaker", "parallelism",
                    "notify_on_complete")
SECRETS_PATH_KEYS = ("age_key_file", "vault_file")


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


class SignalUse(msgspec.Struct):
    signal: str
    command: str


class PluginNode(msgspec.Struct, kw_only=True):
    """A configured or loaded plugin; ``version`` only when its manifest states one."""

    name: str
    version: str | UnsetType = UNSET
    active: bool
    inputs: list[SignalUse]
    outputs: list[SignalUse]


class Endpoint(msgspec.Struct):
    plugin: str
    command: str


class SignalNode(msgspec.Struct):
    name: str
    producers: list[Endpoint]
    consumers: list[Endpoint]


class Topology(msgspec.Struct, kw_only=True):
    """``GET /topology`` (api.md §4.7)."""

    version: str
    captured_at: str
    plugins: list[PluginNode]
    signals: list[SignalNode]


def topology(config: Config, catalog: Catalog, emits: dict[str, list[tuple[str, str]]], now: int) -> Topology:
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
        plugins.append(PluginNode(
            name=name,
            version=loaded.manifest.version if loaded is not None and loaded.manifest.version else UNSET,
            active=loaded is not None,
            inputs=[SignalUse(s, c) for s, c in sorted(inputs.get(name, ()))],
            outputs=[SignalUse(s, c) for s, c in sorted(set(emits.get(name, ())))],
        ))
    signals = [
        SignalNode(name=s, producers=[Endpoint(p, c) for p, c in sorted(producers.get(s, ()))],
                   consumers=[Endpoint(p, c) for p, c in sorted(consumers.get(s, ()))])
        for s in sorted(set(producers) | set(consumers))
    ]
    return Topology(version=__version__, captured_at=rfc3339(now) or "", plugins=plugins, signals=signals)


@get("/topology", guards=[SYSTEM_READ], responses=errors(401, 403))
async def get_topology(ductile: Facade) -> Topology:
    catalog = ductile.catalog
    emits = await asyncio.to_thread(lambda: {n: _emits(p) for n, p in catalog.plugins.items()})
    return topology(ductile.config, catalog, emits, now_ns())


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


class TokenView(msgspec.Struct, kw_only=True):
    """An API token as the view shows it: its vault name, never a literal value."""

    secret_ref: str | UnsetType = UNSET
    scopes: list[str]


class PluginView(msgspec.Struct, kw_only=True):
    """A plugin's entry; the keys it does not set are left out (api.md §4.8)."""

    enabled: bool
    uses: Any = UNSET
    schedules: Any = UNSET
    config: Any = UNSET
    retry: Any = UNSET
    timeouts: Any = UNSET
    circuit_breaker: Any = UNSET
    parallelism: Any = UNSET
    notify_on_complete: Any = UNSET


class WebhookEndpointView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One endpoint as webhooks.md §5 lists it: its ``secret_ref`` (a vault name), never the value.
    The optional keys appear only when they apply."""

    name: str
    path: str
    plugin: str
    secret_ref: str
    signature_header: str
    max_body_size: int  # bytes
    event_type: str | UnsetType = UNSET
    timestamp_header: str | UnsetType = UNSET
    timestamp_tolerance: str | UnsetType = UNSET  # a duration, e.g. "5m"


class WebhooksView(msgspec.Struct, kw_only=True):
    listen: str | None
    endpoints: list[WebhookEndpointView]


def webhooks_view(config: WebhooksConfig) -> WebhooksView:
    """From the typed section, so only §5's fields can ever be shown (every endpoint, served or not)."""
    return WebhooksView(listen=config.listen, endpoints=[WebhookEndpointView(
        name=e.name, path=e.path, plugin=e.plugin, secret_ref=e.secret_ref, signature_header=e.signature_header,
        max_body_size=e.max_body_size, event_type=e.event_type if e.event_type is not None else UNSET,
        timestamp_header=e.timestamp_header if e.timestamp_header is not None else UNSET,
        timestamp_tolerance=format_duration(e.timestamp_tolerance) if e.timestamp_header is not None else UNSET,
    ) for e in config.endpoints])


class ConfigView(msgspec.Struct, kw_only=True):
    """``GET /config/view`` (api.md §4.8): the config's own keys, redacted. The sections stay
    free-form: they are the config as written, with durations as given."""

    service: dict[str, Any]
    state: dict[str, Any]
    secrets: dict[str, Any]
    plugin_roots: list[Any]
    api: dict[str, Any]
    plugins: dict[str, PluginView]
    pipelines: list[Any]
    webhooks: WebhooksView
    instances: Any
    remote_ingress: dict[str, Any]
    compiled_routes: dict[str, Any]


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
        "webhooks": msgspec.to_builtins(webhooks_view(config.webhooks)),
        "instances": raw.get("instances") or [],
        "remote_ingress": raw.get("remote_ingress") or {},
        "compiled_routes": {name: p.routes() for name, p in sorted((pipelines or {}).items())},
    }
    literal = tuple(t.token for t in config.api.tokens if t.token)
    return _scrub(redact(view), literal)


@get("/config/view", guards=[SYSTEM_READ], responses=errors(401, 403))
async def get_config_view(ductile: Facade) -> ConfigView:
    return msgspec.convert(config_view(ductile.config, ductile.pipelines_by_name), ConfigView)


# --- doctor ------------------------------------------------------------------------------------------


class DoctorCheck(msgspec.Struct, kw_only=True):
    """One finding of the doctor's report: an info finding is ``ok`` without a severity."""

    name: str
    ok: bool
    severity: Literal["error", "warning"] | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    field: str | UnsetType = UNSET


class DoctorReport(msgspec.Struct, kw_only=True):
    """``GET /system/doctor``: ``ok`` unless some check is an error."""

    ok: bool
    captured_at: str
    checks: list[DoctorCheck]


class SelfcheckReport(msgspec.Struct, kw_only=True):
    """``GET /system/selfcheck`` (operations.md §5)."""

    healthy: bool
    captured_at: str
    checks: list[SelfcheckCheck]


def _finding_check(finding: Finding) -> dict[str, Any]:
    if finding.level is Level.INFO:  # what is there (plugins loaded, the head, next fires): passes
        return {"name": finding.category, "ok": True, "detail": finding.message, "field": finding.field}
    return {"name": finding.category, "ok": False, "severity": str(finding.level), "detail": finding.message,
            "field": finding.field}


@get("/system/doctor", guards=[SYSTEM_READ], responses=errors(401, 403, 500))
async def system_doctor(ductile: Facade) -> DoctorReport:
    """The findings of ``system doctor`` on the config dir as it is on disk now (operations.md §6)."""
    try:
        report = await asyncio.to_thread(doctor_report, ductile.config.source)
        checks = [_finding_check(f) for f in report.findings]
    except Exception as exc:
        raise internal("doctor run failed", exc) from None
    return DoctorReport(ok=not any(c.get("severity") == "error" for c in checks), captured_at=rfc3339(now_ns()) or "",
                        checks=msgspec.convert(checks, list[DoctorCheck]))


# --- selfcheck -------------------------------------------------------------------------------------


@get("/system/selfcheck", guards=[SYSTEM_READ], responses=errors(401, 403, 409, 500))
async def system_selfcheck(ductile: Facade) -> SelfcheckReport:
    try:
        checks = await ductile.system.selfcheck()
    except Exception as exc:
        raise internal("selfcheck run failed", exc) from None
    if checks is None:
        raise ApiError(409, "selfcheck already running")
    return SelfcheckReport(healthy=all(c.ok for c in checks), captured_at=rfc3339(now_ns()) or "", checks=checks)


# --- reload --------------------------------------------------------------------------------------------


class Reloaded(msgspec.Struct, kw_only=True):
    """``POST /system/reload`` 200 (config.md §8)."""

    status: str
    reloaded_at: str
    message: str


@post("/system/reload", status_code=200, guards=[scopes("system:rw")], responses=errors(401, 403, 409))
async def system_reload(ductile: Facade) -> Reloaded:
    outcome = await ductile.system.reload()
    if outcome.status != ReloadStatus.OK:
        raise ApiError(409, outcome.error or "config reload rejected")
    return Reloaded(status=outcome.status, reloaded_at=outcome.reloaded_at or "", message=outcome.message or "")
