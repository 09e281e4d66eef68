"""Plugin fingerprints (vault.md §9): keyed BLAKE3 that fails closed without a good nonce, the
`--all` confirmation code, and what mint makes (vault.md §2)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ductile.vault import mint
from ductile.vault.document import CORE, Principal, VaultDocument
from ductile.vault.fingerprint import (
    AttestedPlugin,
    FingerprintError,
    FingerprintKey,
    NonceUnavailable,
    confirmation_code,
    file_fingerprint,
    plugin_fingerprint,
)
from ductile.vocabulary import PrincipalKind

KEY_BYTES = bytes(range(32))
NONCE = base64.urlsafe_b64encode(KEY_BYTES).decode()


def _plugin(tmp_path: Path) -> tuple[Path, Path]:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_bytes(b"name: echo\nprotocol: 2\n")
    entry = tmp_path / "run.sh"
    entry.write_bytes(b"#!/bin/sh\necho hi\n")
    entry.chmod(0o755)
    return manifest, entry


def test_a_fingerprint_is_blake3_keyed_with_the_nonce_in_lowercase_hex(tmp_path: Path) -> None:
    manifest, entry = _plugin(tmp_path)
    fp = plugin_fingerprint(manifest, entry, FingerprintKey.from_nonce(NONCE))
    assert fp.manifest == blake3.blake3(manifest.read_bytes(), key=KEY_BYTES).hexdigest()
    assert fp.entrypoint == blake3.blake3(entry.read_bytes(), key=KEY_BYTES).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", fp.entrypoint)
    assert fp.manifest != blake3.blake3(manifest.read_bytes()).hexdigest()  # never unkeyed


def test_another_nonce_gives_another_fingerprint(tmp_path: Path) -> None:
    manifest, _ = _plugin(tmp_path)
    a = file_fingerprint(manifest, FingerprintKey.from_nonce(NONCE))
    b = file_fingerprint(manifest, FingerprintKey.from_nonce(mint.nonce()))
    assert a != b


def test_the_nonce_is_accepted_padded_or_unpadded() -> None:
    unpadded = NONCE.rstrip("=")
    assert repr(FingerprintKey.from_nonce(unpadded)) == "FingerprintKey(<hidden>)"
    probe = blake3.blake3(b"x", key=KEY_BYTES).hexdigest()
    assert FingerprintKey.from_nonce(unpadded).hasher().update(b"x").hexdigest() == probe
    assert FingerprintKey.from_nonce(NONCE).hasher().update(b"x").hexdigest() == probe


@pytest.mark.parametrize(
    ("nonce", "message"),
    [
        ("", "vault fingerprint nonce is missing"),
        ("not base64!", "vault fingerprint nonce is not base64url"),
        (base64.urlsafe_b64encode(b"\x01" * 31).decode(), "vault fingerprint nonce is not 32 bytes"),
        (base64.urlsafe_b64encode(b"\x01" * 33).decode(), "vault fingerprint nonce is not 32 bytes"),
        (base64.b64encode(b"\xfb" * 32).decode(), "vault fingerprint nonce is not base64url"),  # '+' and '/'
    ],
    ids=["missing", "garbage", "short", "long", "standard-alphabet"],
)
def test_a_bad_nonce_fails_closed(nonce: str, message: str) -> None:
    with pytest.raises(NonceUnavailable) as err:
        FingerprintKey.from_nonce(nonce)
    assert str(err.value) == message


def test_the_key_comes_from_the_core_principal() -> None:
    doc = VaultDocument(principals={CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=NONCE)})
    assert FingerprintKey.from_vault(doc).hasher().update(b"x").hexdigest() == (
        blake3.blake3(b"x", key=KEY_BYTES).hexdigest()
    )
    with pytest.raises(NonceUnavailable, match="no core principal"):
        FingerprintKey.from_vault(VaultDocument())
    with pytest.raises(NonceUnavailable, match="missing"):
        FingerprintKey.from_vault(VaultDocument(principals={CORE: Principal(kind=PrincipalKind.GATEWAY)}))


def test_symlinks_are_resolved_so_the_target_bytes_are_fingerprinted(tmp_path: Path) -> None:
    manifest, entry = _plugin(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(entry)
    key = FingerprintKey.from_nonce(NONCE)
    assert plugin_fingerprint(manifest, link, key) == plugin_fingerprint(manifest, entry, key)


def test_a_changed_byte_changes_the_fingerprint(tmp_path: Path) -> None:
    manifest, entry = _plugin(tmp_path)
    key = FingerprintKey.from_nonce(NONCE)
    before = plugin_fingerprint(manifest, entry, key)
    entry.write_bytes(entry.read_bytes() + b"#")
    after = plugin_fingerprint(manifest, entry, key)
    assert after.manifest == before.manifest and after.entrypoint != before.entrypoint


def test_an_entrypoint_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    manifest, entry = _plugin(tmp_path)
    entry.chmod(0o644)
    with pytest.raises(FingerprintError) as err:
        plugin_fingerprint(manifest, entry, FingerprintKey.from_nonce(NONCE))
    assert str(err.value) == f"plugin entrypoint {entry.resolve()} is not executable"


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_only_an_existing_regular_file_has_a_fingerprint(tmp_path: Path, what: str) -> None:
    path = tmp_path / "x"
    if what == "directory":
        path.mkdir()
    with pytest.raises(FingerprintError, match=f"cannot fingerprint {tmp_path}"):
        file_fingerprint(path, FingerprintKey.from_nonce(NONCE))


def _entry(name: str, enabled: bool = True, manifest: str = "m", entrypoint: str = "e") -> AttestedPlugin:
    return AttestedPlugin(name=name, uses=name, manifest_hash=manifest, entrypoint_hash=entrypoint,
                          enabled=enabled)


def test_the_confirmation_code_is_the_spec_hash_over_plugins_sorted_by_name() -> None:
    b = AttestedPlugin(name="b", uses="a", manifest_hash="m2", entrypoint_hash="e2", enabled=False)
    a = _entry("a")
    expected = blake3.blake3(b"a\0a\0m\0e\0\x01" + b"b\0a\0m2\0e2\0\x00").hexdigest()[:5]
    assert confirmation_code([b, a]) == confirmation_code([a, b]) == expected


@pytest.mark.parametrize(
    "changed",
    [_entry("a", enabled=False), _entry("a", manifest="m9"), _entry("a", entrypoint="e9"), _entry("z")],
    ids=["enabled", "manifest", "entrypoint", "name"],
)
def test_any_change_in_the_change_set_changes_the_code(changed: AttestedPlugin) -> None:
    assert confirmation_code([_entry("a"), _entry("c")]) != confirmation_code([changed, _entry("c")])


@given(st.data())
def test_minted_values_are_43_base64url_characters_of_32_bytes(data: st.DataObject) -> None:
    value = data.draw(st.sampled_from([mint.secret_value, mint.nonce]))()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
    assert len(base64.urlsafe_b64decode(value + "=")) == 32


def test_minted_values_differ_and_a_minted_nonce_is_a_usable_key() -> None:
    assert len({mint.secret_value() for _ in range(100)}) == 100
    FingerprintKey.from_nonce(mint.nonce())
    assert str(mint.identity().to_public()).startswith("age1")
