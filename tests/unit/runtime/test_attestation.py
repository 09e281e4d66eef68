"""The fingerprint re-check before a spawn (vault.md §9): every way it fails closed, and a match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ductile.config.checksums import Checksums, PluginFingerprintEntry
from ductile.runtime.attestation import mismatch
from ductile.runtime.catalog import Catalog, LoadedPlugin
from ductile.vault.document import CORE, Principal, VaultDocument
from ductile.vault.fingerprint import FingerprintKey, plugin_fingerprint
from ductile.vault.mint import nonce
from ductile.vocabulary import PrincipalKind

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
NONCE = nonce()


def vault(nonce_text: str = NONCE) -> VaultDocument:
    return VaultDocument(principals={CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=nonce_text)})


@pytest.fixture
def plugin(tmp_path: Path) -> LoadedPlugin:
    from ductile.config.model import PluginEntry
    from ductile.plugins.manifest import parse_manifest

    directory = tmp_path / "catlike"
    shutil.copytree(PLUGINS / "catlike", directory)
    manifest = directory / "manifest.yaml"
    return LoadedPlugin(name="catlike", base="catlike", manifest=parse_manifest(manifest.read_bytes(), str(manifest)),
                        directory=directory, entrypoint=directory / "run.sh", entry=PluginEntry(name="catlike", enabled=True),
                        parallelism=1, manifest_path=manifest)


def attested(plugin: LoadedPlugin, nonce_text: str = NONCE) -> Catalog:
    assert plugin.manifest_path is not None
    fp = plugin_fingerprint(plugin.manifest_path, plugin.entrypoint, FingerprintKey.from_nonce(nonce_text))
    entry = PluginFingerprintEntry(name=plugin.name, manifest_path=str(plugin.manifest_path),
                                   manifest_resolved_path=str(plugin.manifest_path), manifest_hash=fp.manifest,
                                   entrypoint_path=str(plugin.entrypoint), entrypoint_resolved_path=str(plugin.entrypoint),
                                   entrypoint_hash=fp.entrypoint)
    return Catalog(plugins={plugin.name: plugin}, problems=[], lock=Checksums(plugin_fingerprints=(entry,)))


def test_attested_bytes_match(plugin: LoadedPlugin) -> None:
    assert mismatch(attested(plugin), plugin, vault()) is None


def test_changed_bytes_are_a_mismatch_naming_the_file(plugin: LoadedPlugin) -> None:
    catalog = attested(plugin)
    with plugin.entrypoint.open("a") as f:
        f.write("\n# changed\n")
    assert mismatch(catalog, plugin, vault()) == \
        f'plugin "catlike" entrypoint does not match its recorded fingerprint ({plugin.entrypoint})'


def test_no_recorded_fingerprint_is_a_mismatch(plugin: LoadedPlugin) -> None:
    catalog = Catalog(plugins={}, problems=[], lock=Checksums())
    assert mismatch(catalog, plugin, vault()) == \
        "plugin \"catlike\" has no recorded fingerprint; run 'ductile plugin lock catlike' and reload"


def test_an_unreadable_lock_fails_closed_with_its_reason(plugin: LoadedPlugin) -> None:
    catalog = Catalog(plugins={}, problems=[], lock_error="/c/.checksums: version must be 2, got 1")
    assert mismatch(catalog, plugin, vault()) == "/c/.checksums: version must be 2, got 1"


@pytest.mark.parametrize(("nonce_text", "detail"), [
    ("", "vault fingerprint nonce is missing"),
    ("AAAA", "vault fingerprint nonce is not 32 bytes"),
])
def test_recorded_fingerprints_with_no_usable_nonce_fail_closed(plugin: LoadedPlugin, nonce_text: str, detail: str) -> None:
    assert mismatch(attested(plugin), plugin, vault(nonce_text)) == detail


def test_admission_reports_only_recorded_plugins_whose_bytes_changed(plugin: LoadedPlugin) -> None:
    from ductile.runtime.config_check import fingerprint_failures

    catalog = attested(plugin)
    assert fingerprint_failures(catalog, vault()) == []
    assert fingerprint_failures(Catalog(plugins={plugin.name: plugin}, problems=[]), vault()) == []  # never attested
    with plugin.manifest_path.open("a") as f:  # type: ignore[union-attr]
        f.write("\n# changed\n")
    assert fingerprint_failures(catalog, vault()) == [
        f'plugin "catlike" manifest does not match its recorded fingerprint ({plugin.manifest_path})']
