"""`config plugin list|show` (cli.md §2.3): plugins discovered under ``plugin_roots`` set against
those configured under ``plugins:``, with each one's manifest summary, effective config (redacted,
with sources), schedules and fingerprint status. Read-only: nothing here writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ductile.app.plugin_lock import PluginLockError, fingerprint_key
from ductile.config.checksums import ChecksumsError, read_checksums
from ductile.config.model import Config
from ductile.config.redaction import redact
from ductile.config.resolved import EffectiveValue, effective_plugin
from ductile.plugins.discovery import DiscoveredPlugin, discover
from ductile.vault.fingerprint import FingerprintError, plugin_fingerprint

NOT_FOUND = 'plugin "{name}" is neither configured nor discovered'


class PluginNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(NOT_FOUND.format(name=name))


class CommandRow(msgspec.Struct, frozen=True):
    name: str
    type: str


class PluginRow(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    version: str | None
    discovered: bool
    configured: bool
    enabled: bool
    commands: list[CommandRow]
    uses: str | None = None
    path: str | None = None


class Fingerprint(msgspec.Struct, frozen=True, omit_defaults=True):
    recorded: bool
    matches: bool | None = None  # None: not recorded, or no vault key to compute it with


class PluginDetail(msgspec.Struct, frozen=True):
    name: str
    manifest: dict[str, Any] | None
    config: dict[str, EffectiveValue | Any]
    schedules: list[Any]
    fingerprint: Fingerprint


def _discovered(config: Config) -> dict[str, DiscoveredPlugin]:
    return discover(config.plugin_roots, config.service.allow_symlinks)[0]


def plugin_rows(config: Config) -> list[PluginRow]:
    """One row per name that is discovered or configured (an alias shows its base's manifest)."""
    found = _discovered(config)
    rows: list[PluginRow] = []
    for name in sorted(set(found) | set(config.plugins)):
        entry = config.plugins.get(name)
        uses = entry.uses if entry is not None and entry.uses and entry.uses != name else None
        plugin = found.get(uses or name)
        rows.append(PluginRow(
            name=name,
            version=plugin.manifest.version if plugin else None,
            discovered=name in found,
            configured=entry is not None,
            enabled=bool(entry and entry.enabled),
            commands=[CommandRow(c.name, c.type) for c in plugin.manifest.commands] if plugin else [],
            uses=uses,
            path=str(plugin.directory) if plugin else None,
        ))
    return rows


def plugin_detail(config: Config, name: str, environ: Mapping[str, str]) -> PluginDetail:
    found = _discovered(config)
    entry = config.plugins.get(name)
    if entry is None and name not in found:
        raise PluginNotFound(name)
    uses = entry.uses if entry is not None and entry.uses and entry.uses != name else None
    plugin = found.get(uses or name)
    manifest = None
    if plugin is not None:
        m = plugin.manifest
        manifest = {"name": m.name, "version": m.version, "protocol": m.protocol, "description": m.description,
                    "entrypoint": str(plugin.entrypoint), "concurrency_safe": m.concurrency_safe,
                    "commands": [{"name": c.name, "type": c.type, "description": c.description} for c in m.commands]}
    settings: dict[str, Any] = {}
    if entry is not None:
        safe = plugin.manifest.concurrency_safe if plugin is not None else True
        settings = {**effective_plugin(config, entry, concurrency_safe=safe), "config": redact(dict(entry.config))}
    return PluginDetail(name=name, manifest=manifest, config=settings,
                        schedules=list(entry.schedules) if entry else [],
                        fingerprint=_fingerprint(config, name, plugin, environ))


def _fingerprint(config: Config, name: str, plugin: DiscoveredPlugin | None, environ: Mapping[str, str]) -> Fingerprint:
    try:
        lock = read_checksums(config.source.config_dir)
    except ChecksumsError:
        lock = None
    recorded = lock.fingerprint(name) if lock is not None else None
    if recorded is None:
        return Fingerprint(recorded=False)
    if plugin is None:
        return Fingerprint(recorded=True, matches=False)
    try:
        key = fingerprint_key(config, environ)
        now = plugin_fingerprint(plugin.manifest_path, plugin.entrypoint, key)
    except (PluginLockError, FingerprintError):
        return Fingerprint(recorded=True)  # no vault key here: the match cannot be computed
    return Fingerprint(recorded=True, matches=(now.manifest, now.entrypoint) == (recorded.manifest_hash,
                                                                                  recorded.entrypoint_hash))
