"""Verify a plugin's bytes against its `plugin lock` fingerprints (vault.md §9) before a spawn.

Runs before every spawn of a plugin whose principal is registered and active, so the manifest
and the entrypoint are re-hashed each time: a plugin changed after attestation never receives a
secret. Every path fails closed: no recorded fingerprint, an unreadable lock, a vault without a
usable nonce, or a file that cannot be hashed is a mismatch with its own detail.
"""

from __future__ import annotations

import hmac

from ductile.runtime.catalog import Catalog, LoadedPlugin
from ductile.vault.document import VaultDocument
from ductile.vault.fingerprint import FingerprintError, FingerprintKey, plugin_fingerprint

NOT_ATTESTED = "plugin \"{name}\" has no recorded fingerprint; run 'ductile plugin lock {name}' and reload"
CHANGED = "plugin \"{name}\" {part} does not match its recorded fingerprint ({path})"


def mismatch(catalog: Catalog, plugin: LoadedPlugin, doc: VaultDocument) -> str | None:
    """None when the plugin's files match what `plugin lock` recorded; else why not."""
    if catalog.lock_error is not None:
        return catalog.lock_error
    recorded = catalog.lock.fingerprint(plugin.name) if catalog.lock is not None else None
    if recorded is None or plugin.manifest_path is None:
        return NOT_ATTESTED.format(name=plugin.name)
    try:
        key = FingerprintKey.from_vault(doc)
        actual = plugin_fingerprint(plugin.manifest_path, plugin.entrypoint, key)
    except FingerprintError as exc:
        return str(exc)
    # Constant time: a fingerprint is a keyed MAC, and comparing MACs never short-circuits.
    if not hmac.compare_digest(actual.entrypoint.encode(), recorded.entrypoint_hash.encode()):
        return CHANGED.format(name=plugin.name, part="entrypoint", path=plugin.entrypoint)
    if not hmac.compare_digest(actual.manifest.encode(), recorded.manifest_hash.encode()):
        return CHANGED.format(name=plugin.name, part="manifest", path=plugin.manifest_path)
    return None
