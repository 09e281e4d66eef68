"""The pure decisions of hot reload (config.md §8): which changes need a restart, the rejection
text, and the snapshot hash that ConfigReloaded carries."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ductile.app.reload import refusal, rejected, restart_only_changes, snapshot_hash
from ductile.config import Config, ConfigSource, load_config

BASE = """
state: {path: data/ductile.db}
service: {durability: full}
api: {enabled: true, listen: "127.0.0.1:8081", auth: {tokens: [{token: literal-token-value, scopes: ["*"]}]}}
plugin_roots: [plugins]
plugins: {}
"""


def load(tmp_path: Path, text: str) -> Config:
    directory = tmp_path / "conf"
    (directory / "plugins").mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(textwrap.dedent(text))
    source = ConfigSource(root_file=directory / "config.yaml", config_dir=directory, source="explicit")
    return load_config(source, environ={"HOME": str(tmp_path / "home")})


def test_an_unchanged_config_may_be_reloaded(tmp_path: Path) -> None:
    assert refusal(load(tmp_path, BASE), load(tmp_path, BASE)) is None


@pytest.mark.parametrize(("old", "new", "keys"), [
    ("path: data/ductile.db", "path: other/ductile.db", "state.path"),
    ("durability: full", "durability: normal", "service.durability"),
    ('listen: "127.0.0.1:8081"', 'listen: "127.0.0.1:9999"', "api.listen"),
])
def test_a_restart_only_key_refuses_the_reload_naming_it(tmp_path: Path, old: str, new: str, keys: str) -> None:
    running = load(tmp_path, BASE)
    changed = load(tmp_path, BASE.replace(old, new))
    assert refusal(running, changed) == f"changes to {keys} require a full restart"
    assert rejected(refusal(running, changed) or "") == f"config reload rejected: changes to {keys} require a full restart"


def test_several_restart_only_keys_are_named_in_the_spec_order(tmp_path: Path) -> None:
    running = load(tmp_path, BASE)
    changed = load(tmp_path, BASE.replace("durability: full", "durability: normal").replace("data/", "else/"))
    assert restart_only_changes(running, changed) == ["state.path", "service.durability"]


def test_a_state_path_change_does_not_also_name_the_default_management_socket(tmp_path: Path) -> None:
    running = load(tmp_path, BASE)
    moved = load(tmp_path, BASE.replace("data/", "else/"))
    assert running.api.management_socket != moved.api.management_socket  # the default follows state.path
    assert restart_only_changes(running, moved) == ["state.path"]


def test_changes_a_reload_may_apply_are_not_refused(tmp_path: Path) -> None:
    running = load(tmp_path, BASE)
    changed = load(tmp_path, BASE.replace("literal-token-value", "another-token-value").replace("enabled: true",
                                                                                                  "enabled: false"))
    assert refusal(running, changed) is None


def test_the_snapshot_hash_is_stable_and_changes_with_the_document() -> None:
    doc = {"b": 1, "a": {"y": [1, 2], "x": "[REDACTED]"}}
    same = {"a": {"x": "[REDACTED]", "y": [1, 2]}, "b": 1}
    assert snapshot_hash(doc) == snapshot_hash(same)
    assert snapshot_hash(doc) != snapshot_hash({**doc, "b": 2})
    assert len(snapshot_hash(doc)) == 64


def test_a_rejection_is_prefixed_once() -> None:
    assert rejected("boom") == "config reload rejected: boom"
    assert rejected("config reload rejected: boom") == "config reload rejected: boom"
    gate = "config reload rejected (admission.fail_on_drift): operational drift: /c/p.yaml"
    assert rejected(gate) == gate  # a gate's reason carries its own form of the prefix
