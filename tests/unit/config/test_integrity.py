"""Every row of config.md §6.3's table, each message byte for byte."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest

from ductile.config.checksums import Checksums, write_checksums
from ductile.config.integrity import IntegrityKind, Tier, locked_files, tier_of, verify


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "config.yaml").write_text("plugin_roots: [plugins]\ninclude: [plugins.yaml]\n")
    (d / "plugins.yaml").write_text("plugins: {}\n")
    (d / "webhooks.yaml").write_text("webhooks: {endpoints: []}\n")
    return d


def loaded(conf: Path) -> list[Path]:
    return [conf / "config.yaml", conf / "plugins.yaml"]


def lock(conf: Path, **override: str) -> None:
    files = locked_files(loaded(conf), conf)
    hashes = {str(p): blake3.blake3(p.read_bytes()).hexdigest() for p in files}
    hashes.update(override)
    write_checksums(conf, Checksums(generated_at="2026-01-01T00:00:00Z", hashes=hashes))


def messages(conf: Path) -> list[tuple[IntegrityKind, str]]:
    return [(f.kind, f.message) for f in verify(loaded(conf), conf).findings]


def test_a_locked_unchanged_config_has_no_finding(conf: Path) -> None:
    lock(conf)
    assert messages(conf) == []


def test_high_security_files_are_webhooks_tokens_and_scopes_json(conf: Path) -> None:
    assert tier_of(conf / "webhooks.yaml", conf) is Tier.HIGH_SECURITY
    assert tier_of(conf / "sub" / "tokens.yaml", conf) is Tier.HIGH_SECURITY
    assert tier_of(conf / "scopes" / "ci.json", conf) is Tier.HIGH_SECURITY
    assert tier_of(conf / "plugins.yaml", conf) is Tier.OPERATIONAL


@pytest.mark.parametrize("content", ["version: 1\nhashes: {}\n", "[unclosed\n", "- a list\n"])
def test_an_unreadable_or_wrong_version_lock_is_an_error_for_every_file(conf: Path, content: str) -> None:
    (conf / ".checksums").write_text(content)
    report = verify(loaded(conf), conf)
    assert [f.kind for f in report.findings] == [IntegrityKind.LOCK_UNREADABLE]
    assert report.findings[0].is_error and str(conf / ".checksums") in report.findings[0].message


def test_a_missing_lock_with_high_security_files_is_tampering(conf: Path) -> None:
    assert messages(conf) == [(IntegrityKind.TAMPERING,
        f"tampering detected: {conf}/.checksums is missing but high-security files exist (webhooks.yaml); "
        f"run 'ductile config lock --config-dir {conf}'")]


def test_a_missing_lock_without_high_security_files_only_warns(conf: Path) -> None:
    (conf / "webhooks.yaml").unlink()
    report = verify(loaded(conf), conf)
    assert [(f.kind, f.message, f.is_error) for f in report.findings] == [(IntegrityKind.NOT_LOCKED,
        "configuration is not locked; run 'ductile config lock' to enable integrity verification", False)]


def test_a_changed_high_security_file_is_tampering(conf: Path) -> None:
    lock(conf)
    (conf / "webhooks.yaml").write_text("webhooks: {endpoints: []}\n# edited\n")
    assert messages(conf) == [(IntegrityKind.TAMPERING,
        f"tampering detected: {conf / 'webhooks.yaml'} does not match .checksums (high-security file); "
        f"if you made this change, run 'ductile config lock --config-dir {conf}'")]


def test_an_unrecorded_high_security_file_is_tampering(conf: Path) -> None:
    lock(conf)
    (conf / "tokens.yaml").write_text("tokens: []\n")
    assert messages(conf) == [(IntegrityKind.TAMPERING,
        f"tampering detected: {conf / 'tokens.yaml'} is not recorded in .checksums (high-security file); "
        f"if you made this change, run 'ductile config lock --config-dir {conf}'")]


def test_a_changed_operational_file_is_drift(conf: Path) -> None:
    lock(conf)
    (conf / "plugins.yaml").write_text("plugins: {x: {}}\n")
    report = verify(loaded(conf), conf)
    assert report.errors == []
    assert messages(conf) == [(IntegrityKind.DRIFT,
        f"config drift: {conf / 'plugins.yaml'} changed since the last 'ductile config lock' (operational file)")]
    assert report.drifted == [str(conf / "plugins.yaml")]


def test_an_unrecorded_operational_file_is_drift(conf: Path) -> None:
    lock(conf)
    (conf / "more.yaml").write_text("{}\n")
    findings = verify([*loaded(conf), conf / "more.yaml"], conf).findings
    assert [(f.kind, f.message) for f in findings] == [(IntegrityKind.DRIFT,
        f"config drift: {conf / 'more.yaml'} is not recorded in .checksums (operational file)")]


def test_an_entry_for_a_file_no_longer_loaded_is_stale(conf: Path) -> None:
    lock(conf, **{str(conf / "gone.yaml"): "0" * 64})
    assert messages(conf) == [(IntegrityKind.STALE, f"stale .checksums entry: {conf / 'gone.yaml'}")]


def test_the_blake3_prefix_is_accepted(conf: Path) -> None:
    files = locked_files(loaded(conf), conf)
    (conf / ".checksums").write_text("version: 2\nhashes:\n" + "".join(
        f"  {p}: blake3:{blake3.blake3(p.read_bytes()).hexdigest()}\n" for p in files))
    assert messages(conf) == []


def test_a_file_outside_the_config_dir_may_be_recorded_by_its_own_directory(conf: Path, tmp_path: Path) -> None:
    lock(conf)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "extra.yaml").write_text("{}\n")
    write_checksums(shared, Checksums(hashes={str(shared / "extra.yaml"): blake3.blake3(b"{}\n").hexdigest()}))
    assert verify([*loaded(conf), shared / "extra.yaml"], conf).findings == []
    (shared / "extra.yaml").write_text("{a: 1}\n")
    assert [f.kind for f in verify([*loaded(conf), shared / "extra.yaml"], conf).findings] == [IntegrityKind.DRIFT]
