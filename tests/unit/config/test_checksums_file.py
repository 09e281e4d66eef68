"""The ``.checksums`` file model (config.md §6.2): version 2 only, atomic 0600 writes, entries."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ductile.config.checksums import (
    Checksums,
    ChecksumsError,
    PluginFingerprintEntry,
    read_checksums,
    write_checksums,
)


def entry(name: str) -> PluginFingerprintEntry:
    return PluginFingerprintEntry(name=name, manifest_path=f"/p/{name}/manifest.yaml", manifest_resolved_path="/r/m",
                                  manifest_hash="a" * 64, entrypoint_path=f"/p/{name}/run.sh",
                                  entrypoint_resolved_path="/r/e", entrypoint_hash="b" * 64)


def test_a_missing_lock_reads_as_none(tmp_path: Path) -> None:
    assert read_checksums(tmp_path) is None


@pytest.mark.parametrize(("text", "problem"), [
    ("version: 1\nhashes: {}\n", "version must be 2, got 1"),
    ("hashes: {}\n", "version must be 2, got None"),
    ("version: 2\nhashes: [\n", "not valid YAML"),
    ("- a\n", "expected a mapping"),
])
def test_an_unreadable_lock_is_an_error(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / ".checksums").write_text(text)
    with pytest.raises(ChecksumsError, match=problem):
        read_checksums(tmp_path)


def test_a_written_lock_is_0600_sorted_and_reads_back(tmp_path: Path) -> None:
    lock = Checksums(generated_at="2026-11-27T10:00:00Z", hashes={"/c/config.yaml": "c" * 64})
    write_checksums(tmp_path, lock.with_fingerprints([entry("zeta"), entry("echo")]))
    path = tmp_path / ".checksums"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = read_checksums(tmp_path)
    assert back is not None and [e.name for e in back.plugin_fingerprints] == ["echo", "zeta"]
    assert back.fingerprint("zeta") == entry("zeta") and back.fingerprint("nope") is None
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_empty_fingerprints_are_omitted_and_the_blake3_prefix_is_accepted(tmp_path: Path) -> None:
    write_checksums(tmp_path, Checksums(generated_at="t", hashes={"/c/a.yaml": "d" * 64}))
    text = (tmp_path / ".checksums").read_text()
    assert "plugin_fingerprints" not in text and text.startswith("version: 2\n")
    (tmp_path / ".checksums").write_text(text.replace("d" * 64, "blake3:" + "d" * 64))
    back = read_checksums(tmp_path)
    assert back is not None and back.hashes == {"/c/a.yaml": "d" * 64}
