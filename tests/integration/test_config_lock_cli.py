"""``ductile config lock`` (config.md §6.4) as the real command: its exact lines, --dry-run, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ductile.config.checksums import Checksums, PluginFingerprintEntry, read_checksums, write_checksums
from tests.integration.test_secrets_cli import ductile


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump({"plugins": {"echo": {"enabled": True}}}))
    (d / "tokens.yaml").write_text("tokens: []\n")
    return d


def entry(name: str) -> PluginFingerprintEntry:
    return PluginFingerprintEntry(name=name, manifest_path="/m", manifest_resolved_path="/m", manifest_hash="a" * 64,
                                  entrypoint_path="/e", entrypoint_resolved_path="/e", entrypoint_hash="b" * 64)


def test_verbose_lock_prints_each_file_and_entry_then_writes(conf: Path, home: Path) -> None:
    write_checksums(conf, Checksums(plugin_fingerprints=(entry("echo"), entry("old"))))
    done = ductile("config", "lock", "--config-dir", str(conf), "-v", home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == (
        f"DISCOVER [operational] {conf / 'config.yaml'}\n"
        f"DISCOVER [high-security] {conf / 'tokens.yaml'}\n"
        "PRESERVE [plugin] echo\n"
        "PRUNE [plugin] old\n"
        f"WROTE .checksums: {conf / '.checksums'}\n"
        "Successfully locked configuration in 1 directory:\n"
        f"  {conf}\n"
    )
    lock = read_checksums(conf)
    assert lock is not None and set(lock.hashes) == {str(conf / "config.yaml"), str(conf / "tokens.yaml")}
    assert [e.name for e in lock.plugin_fingerprints] == ["echo"]


def test_quiet_lock_prints_only_the_summary(conf: Path, home: Path) -> None:
    done = ductile("config", "lock", "--config", str(conf / "config.yaml"), home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"Successfully locked configuration in 1 directory:\n  {conf}\n"
    assert (conf / ".checksums").stat().st_mode & 0o777 == 0o600


def test_dry_run_counts_the_files_and_writes_nothing(conf: Path, home: Path) -> None:
    done = ductile("config", "lock", "--config-dir", str(conf), "--dry-run", home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"Dry-run: would lock 2 file(s) in {conf}\n"
    assert not (conf / ".checksums").exists()


def test_a_config_that_does_not_parse_exits_1_and_writes_nothing(conf: Path, home: Path) -> None:
    (conf / "config.yaml").write_text("plugins: [unclosed\n")
    done = ductile("config", "lock", "--config-dir", str(conf), home=home)
    assert done.returncode == 1
    assert done.stderr.decode().startswith("config error: ")
    assert not (conf / ".checksums").exists()
