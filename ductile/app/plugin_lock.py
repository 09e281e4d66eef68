"""`ductile plugin lock` (vault.md §9): attest plugin bytes into ``.checksums`` ``plugin_fingerprints``.

A fingerprint is keyed with the vault's nonce, so attesting needs the age key and the vault; there
is never an unkeyed fallback. ``config lock`` never re-approves plugin bytes: only this does.
New fingerprints take effect at the next reload (the dispatcher reads them with the catalog).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from ductile.config.checksums import (
    Checksums,
    ChecksumsError,
    PluginFingerprintEntry,
    read_checksums,
    write_checksums,
)
from ductile.config.model import Config
from ductile.config.paths import home_directory
from ductile.plugins.discovery import DiscoveredPlugin, discover
from ductile.vault.blob import BlobFile, VaultBlobError, VaultMissing
from ductile.vault.fingerprint import (
    AttestedPlugin,
    FingerprintError,
    FingerprintKey,
    NonceUnavailable,
    confirmation_code,
    plugin_fingerprint,
)
from ductile.vault.keys import AgeKeyError, resolve_keyring

NOT_CONFIGURED = 'plugin "{name}" is not configured; add it to config.yaml before attesting it'
NOT_DISCOVERED = 'plugin "{name}" is configured but was not discovered on disk; restore its files before attesting'
NO_CHECKSUMS = "no .checksums: run 'ductile config lock' first"
NO_VAULT = "plugin lock needs the vault fingerprint nonce: run 'ductile vault init' first"
NO_KEY = "plugin lock needs the age key"
BAD_NONCE = "plugin lock needs the vault fingerprint nonce: {error}"
ATTESTED = 'Attested plugin "{name}" (entrypoint {entrypoint}, manifest {manifest}).'
CODE_MISMATCH = 'confirmation code "{given}" does not match the current change set (expected "{expected}")'
NOTHING = "Nothing to attest: every configured plugin matches .checksums."
PREVIEW_HINT = "ductile plugin lock --all {code}"
SHORT_HASH = 12


class PluginLockError(Exception):
    """A refusal of `plugin lock`, with the spec's text."""


class Change(msgspec.Struct, frozen=True, kw_only=True):
    mark: str  # "+" new, "~" changed, "-" removed
    name: str
    entry: PluginFingerprintEntry  # the new entry; the recorded one for a removal


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What `plugin lock --all` would write: the changes, the resulting lock and its code."""

    changes: list[Change]
    lock: Checksums
    code: str


def attested_line(entry: PluginFingerprintEntry) -> str:
    return ATTESTED.format(name=entry.name, entrypoint=entry.entrypoint_hash[:SHORT_HASH],
                           manifest=entry.manifest_hash[:SHORT_HASH])


def _lock(config: Config) -> Checksums:
    try:
        lock = read_checksums(config.source.config_dir)
    except ChecksumsError as exc:
        raise PluginLockError(str(exc)) from None
    if lock is None:
        raise PluginLockError(NO_CHECKSUMS)
    return lock


def fingerprint_key(config: Config, environ: Mapping[str, str]) -> FingerprintKey:
    """The vault-keyed fingerprint key (also read by ``config plugin show``). Raises PluginLockError."""
    return _key(config, environ)


def _key(config: Config, environ: Mapping[str, str]) -> FingerprintKey:
    config_dir = config.source.config_dir
    try:
        keyring = resolve_keyring(environ, config.secrets.age_key_file, config_dir, home_directory(environ))
    except AgeKeyError as exc:
        raise PluginLockError(str(exc)) from None
    if keyring is None:
        raise PluginLockError(NO_KEY)
    try:
        doc = BlobFile(config.secrets.vault_file or config_dir / "vault.age").read(keyring.identities)
        return FingerprintKey.from_vault(doc)
    except VaultMissing:
        raise PluginLockError(NO_VAULT) from None
    except (VaultBlobError, NonceUnavailable) as exc:
        raise PluginLockError(BAD_NONCE.format(error=exc)) from None


def _entry(name: str, uses: str, enabled: bool, found: DiscoveredPlugin, key: FingerprintKey) -> PluginFingerprintEntry:
    try:
        fp = plugin_fingerprint(found.manifest_path, found.entrypoint, key)
    except FingerprintError as exc:
        raise PluginLockError(str(exc)) from None
    return PluginFingerprintEntry(
        name=name, enabled=enabled, uses=uses,
        manifest_path=str(found.manifest_path), manifest_resolved_path=os.path.realpath(found.manifest_path),
        manifest_hash=fp.manifest, entrypoint_path=str(found.entrypoint),
        entrypoint_resolved_path=os.path.realpath(found.entrypoint), entrypoint_hash=fp.entrypoint,
    )


def _discovered(config: Config) -> dict[str, DiscoveredPlugin]:
    return discover(config.plugin_roots, config.service.allow_symlinks)[0]


def _target(config: Config, name: str) -> str:
    uses = config.plugins[name].uses
    return uses if uses and uses != name else ""


def lock_one(config: Config, name: str, environ: Mapping[str, str], *, dry_run: bool = False) -> PluginFingerprintEntry:
    """Attest one configured plugin and merge its entry (nothing written with ``dry_run``)."""
    if name not in config.plugins:
        raise PluginLockError(NOT_CONFIGURED.format(name=name))
    uses = _target(config, name)
    found = _discovered(config).get(uses or name)
    if found is None:
        raise PluginLockError(NOT_DISCOVERED.format(name=name))
    lock = _lock(config)
    entry = _entry(name, uses, config.plugins[name].enabled, found, _key(config, environ))
    if not dry_run:
        others = [e for e in lock.plugin_fingerprints if e.name != name]
        write_checksums(config.source.config_dir, lock.with_fingerprints([*others, entry]))
    return entry


def plan_all(config: Config, environ: Mapping[str, str]) -> Plan:
    """The `--all` change set: every configured, discovered plugin attested anew; entries of
    plugins no longer configured removed. A configured plugin missing on disk keeps its entry."""
    lock = _lock(config)
    key = _key(config, environ)
    discovered = _discovered(config)
    recorded = {e.name: e for e in lock.plugin_fingerprints}
    entries: dict[str, PluginFingerprintEntry] = {}
    changes: list[Change] = []
    for name in sorted(config.plugins):
        uses = _target(config, name)
        found = discovered.get(uses or name)
        if found is None:
            if name in recorded:
                entries[name] = recorded[name]
            continue
        entry = _entry(name, uses, config.plugins[name].enabled, found, key)
        entries[name] = entry
        if name not in recorded:
            changes.append(Change(mark="+", name=name, entry=entry))
        elif recorded[name] != entry:
            changes.append(Change(mark="~", name=name, entry=entry))
    changes += [Change(mark="-", name=n, entry=e) for n, e in sorted(recorded.items()) if n not in config.plugins]
    code = confirmation_code(
        AttestedPlugin(name=c.name, uses=c.entry.uses or c.name, manifest_hash=c.entry.manifest_hash,
                       entrypoint_hash=c.entry.entrypoint_hash, enabled=c.mark != "-" and c.entry.enabled)
        for c in changes
    )
    return Plan(changes=changes, lock=lock.with_fingerprints(list(entries.values())), code=code)


def commit_all(config: Config, plan: Plan, given: str) -> None:
    """Write the planned lock, only if ``given`` is still the plan's code."""
    if given != plan.code:
        raise PluginLockError(CODE_MISMATCH.format(given=given, expected=plan.code))
    write_checksums(config.source.config_dir, plan.lock)
