"""The plugins the gateway can run: configured entries joined to discovered manifests.

An entry runs only when enabled and its manifest (its own name, or ``uses:``) was discovered.
Load errors (a bad alias) refuse the whole config; doctor errors (not discovered, a required
config key missing) leave that one plugin out and are reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

from ductile.config.checksums import Checksums, ChecksumsError, read_checksums
from ductile.config.errors import ConfigError
from ductile.config.model import Config, PluginEntry
from ductile.plugins.discovery import DiscoveredPlugin, discover
from ductile.plugins.manifest import CommandSpec, Manifest
from ductile.system.logs import Log


class LoadedPlugin(msgspec.Struct, frozen=True):
    name: str
    base: str
    manifest: Manifest
    directory: Path
    entrypoint: Path
    entry: PluginEntry
    parallelism: int
    manifest_path: Path | None = None  # what `plugin lock` fingerprints with the entrypoint

    def command(self, name: str) -> CommandSpec | None:
        return self.manifest.command(name)

    def timeout_for(self, command: str) -> float:
        return self.entry.timeout_for(command)


class Problem(msgspec.Struct, frozen=True):
    level: str  # "error" (doctor error) | "warning"
    field: str
    message: str


class Catalog(msgspec.Struct, frozen=True):
    plugins: dict[str, LoadedPlugin]
    problems: list[Problem]
    # The attested fingerprints (`.checksums`, vault.md §9), read with the catalog: new ones take
    # effect at the next reload. A lock that cannot be read leaves ``lock`` None and says why in
    # ``lock_error``, so every fingerprint check fails closed with that reason.
    lock: Checksums | None = None
    lock_error: str | None = None

    def get(self, name: str) -> LoadedPlugin | None:
        return self.plugins.get(name)


def build_catalog(config: Config, discovered: Mapping[str, DiscoveredPlugin]) -> Catalog:
    plugins: dict[str, LoadedPlugin] = {}
    problems: list[Problem] = []
    entries = config.plugins
    for name, entry in sorted(entries.items()):
        if not entry.enabled:
            continue
        target = entry.uses if entry.uses and entry.uses != name else name
        if target != name:
            if name in discovered:
                raise ConfigError(f'plugin "{name}": name collides with a discovered plugin')
            if target not in discovered:
                other = entries.get(target)
                if other is not None and other.uses and other.uses != target:
                    raise ConfigError(f'plugin "{name}": uses "{target}" is an instance, not a plugin')
                raise ConfigError(f'plugin "{name}": uses "{target}" is not a discovered plugin')
        found = discovered.get(target)
        if found is None:
            problems.append(Problem("error", f"plugins.{name}", f'plugin "{name}": not discovered in plugin_roots'))
            continue
        missing = [k for k in found.manifest.config_required if k not in entry.config]
        if missing:
            problems.extend(
                Problem("error", f"plugins.{name}.config.{k}",
                        f'plugin "{name}": config.{k} is required by the plugin manifest')
                for k in missing
            )
            continue
        plugins[name] = LoadedPlugin(
            name=name,
            base=target,
            manifest=found.manifest,
            directory=found.directory,
            entrypoint=found.entrypoint,
            entry=entry,
            parallelism=entry.parallelism_for(config.service.max_workers, found.manifest.concurrency_safe),
            manifest_path=found.manifest_path,
        )
    for name in sorted(discovered):
        if name not in entries:
            continue
        if not entries[name].enabled:
            problems.append(Problem("warning", f"plugins.{name}", f'plugin "{name}" is configured but disabled'))
    return Catalog(plugins=plugins, problems=problems)


def with_lock(catalog: Catalog, config_dir: Path) -> Catalog:
    """The catalog with the attested fingerprints of ``config_dir/.checksums``; a lock that cannot
    be read is kept as ``lock_error`` so that every fingerprint check fails closed with it."""
    try:
        return msgspec.structs.replace(catalog, lock=read_checksums(config_dir))
    except ChecksumsError as exc:
        return msgspec.structs.replace(catalog, lock_error=str(exc))


def load_catalog(config: Config) -> Catalog:
    """Discover the plugins and join them to the config, logging every discovery note and problem."""
    discovered, notes = discover(config.plugin_roots, config.service.allow_symlinks)
    plugin_log = Log("config")
    for note in notes:
        plugin_log.at(note.level.lower(), note.msg, **note.fields)
    catalog = with_lock(build_catalog(config, discovered), config.source.config_dir)
    if catalog.lock_error is not None:
        plugin_log.error("plugin fingerprints unavailable: .checksums cannot be read", error=catalog.lock_error)
    for problem in catalog.problems:
        if problem.level == "error":
            plugin_log.error(problem.message, field=problem.field)
        else:
            plugin_log.warn(problem.message, field=problem.field)
    return catalog
