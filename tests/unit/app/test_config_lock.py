"""`config lock` (config.md §6.4): what is hashed, the tiers, and the fingerprints carried forward."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest
import yaml

from ductile.app.config_lock import ConfigLockError, Tier, plan_lock, verbose_lines, write_lock
from ductile.config.checksums import Checksums, PluginFingerprintEntry, read_checksums, write_checksums
from ductile.config.discovery import ConfigSource
from ductile.config.errors import ConfigError


def entry(name: str) -> PluginFingerprintEntry:
    return PluginFingerprintEntry(
        name=name, manifest_path=f"/p/{name}/manifest.yaml", manifest_resolved_path=f"/p/{name}/manifest.yaml",
        manifest_hash="m" * 64, entrypoint_path=f"/p/{name}/run.sh", entrypoint_resolved_path=f"/p/{name}/run.sh",
        entrypoint_hash="e" * 64,
    )


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    (d / "scopes").mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({
        "include": ["plugins.yaml"], "environment_vars": {"include": ["app.env"]},
        "plugins": {"echo": {"enabled": True}},
    }))
    (d / "plugins.yaml").write_text(yaml.safe_dump({"plugins": {"quiet": {"enabled": False}}}))
    (d / "app.env").write_text("TOKEN_NAME=x\n")
    (d / "webhooks.yaml").write_text("webhooks: []\n")  # never included: hashed all the same
    (d / "routes.yaml").write_text("routes: []\n")
    (d / "scopes" / "ops.json").write_text("{}")
    (d / "scopes" / "notes.txt").write_text("not a scope")
    (d / "vault.age").write_bytes(b"age blob")
    return d


def source(d: Path) -> ConfigSource:
    return ConfigSource(root_file=d / "config.yaml", config_dir=d, source="explicit")


def test_every_file_the_loader_reads_and_the_always_hashed_set_with_their_tiers(conf: Path) -> None:
    plan = plan_lock(source(conf), {"HOME": str(conf.parent)})
    tiers = {Path(f.path).relative_to(conf).as_posix(): f.tier for f in plan.files}
    assert tiers == {
        "config.yaml": Tier.OPERATIONAL, "app.env": Tier.OPERATIONAL, "plugins.yaml": Tier.OPERATIONAL,
        "webhooks.yaml": Tier.HIGH_SECURITY, "routes.yaml": Tier.OPERATIONAL, "scopes/ops.json": Tier.HIGH_SECURITY,
    }
    assert plan.lock.hashes[str(conf / "app.env")] == blake3.blake3(b"TOKEN_NAME=x\n").hexdigest()
    assert verbose_lines(plan)[0] == f"DISCOVER [operational] {conf / 'config.yaml'}"


def test_fingerprints_of_configured_plugins_are_carried_forward_and_the_rest_pruned(conf: Path) -> None:
    write_checksums(conf, Checksums(hashes={"/old": "0" * 64},
                                    plugin_fingerprints=(entry("echo"), entry("quiet"), entry("gone"))))
    plan = plan_lock(source(conf), {"HOME": str(conf.parent)})
    assert (plan.preserved, plan.pruned) == (["echo", "quiet"], ["gone"])  # a disabled plugin is still configured
    assert verbose_lines(plan)[-3:] == ["PRESERVE [plugin] echo", "PRESERVE [plugin] quiet", "PRUNE [plugin] gone"]
    write_lock(plan)
    written = read_checksums(conf)
    assert written is not None
    assert written.plugin_fingerprints == (entry("echo"), entry("quiet"))  # never re-hashed
    assert "/old" not in written.hashes  # a fresh manifest
    assert (conf / ".checksums").stat().st_mode & 0o777 == 0o600


def test_planning_writes_nothing(conf: Path) -> None:
    plan_lock(source(conf), {"HOME": str(conf.parent)})
    assert not (conf / ".checksums").exists()


def test_a_file_that_does_not_parse_is_an_error(conf: Path) -> None:
    (conf / "plugins.yaml").write_text("plugins: [unclosed\n")
    with pytest.raises(ConfigError):
        plan_lock(source(conf), {"HOME": str(conf.parent)})


def test_an_unreadable_lock_is_refused_rather_than_its_fingerprints_dropped(conf: Path) -> None:
    (conf / ".checksums").write_text("version: 1\n")
    with pytest.raises(ConfigLockError, match="version must be 2"):
        plan_lock(source(conf), {"HOME": str(conf.parent)})


def test_an_invalid_config_can_still_be_locked(conf: Path) -> None:
    (conf / "config.yaml").write_text(yaml.safe_dump({"no_such_key": 1, "plugins": {"echo": {"bogus": True}}}))
    plan = plan_lock(source(conf), {"HOME": str(conf.parent)})
    assert str(conf / "config.yaml") in plan.lock.hashes
