"""Plugin state between runs (plugins.md §8): shallow merge, fact mirror, the 1 MiB cap."""

from __future__ import annotations

import msgspec
import pytest

from ductile.plugins.manifest import FactOutput, parse_manifest
from ductile.plugins.state import STATE_CAP_BYTES, StateError, fact_rule_for, next_state

SNAPSHOT = FactOutput(command="poll", fact_type="sqlite_change.snapshot", compatibility_view="mirror_object")

MANIFEST = """\
manifest_spec: ductile.plugin
manifest_version: 1
name: sqlite_change
protocol: 2
entrypoint: run.py
commands: [{name: poll, type: read}, {name: health, type: read}]
fact_outputs:
  - {when: {command: poll}, from: state_updates, fact_type: sqlite_change.snapshot, compatibility_view: mirror_object}
"""


def test_fact_rule_is_found_for_its_command_only() -> None:
    manifest = parse_manifest(MANIFEST)
    assert fact_rule_for(manifest, "poll") == SNAPSHOT
    assert fact_rule_for(manifest, "health") is None


def test_merge_overwrites_mentioned_keys_keeps_the_rest_and_stores_null() -> None:
    current = {"a": 1, "b": 2, "c": 3}
    assert next_state(current, {"b": 20, "c": None, "d": 4}, None) == {"a": 1, "b": 20, "c": None, "d": 4}
    assert current == {"a": 1, "b": 2, "c": 3}


def test_merge_is_shallow() -> None:
    assert next_state({"nested": {"x": 1, "y": 2}}, {"nested": {"x": 9}}, None) == {"nested": {"x": 9}}


def test_merge_accumulates_across_runs() -> None:
    state: dict = {}
    for _ in range(3):
        state = next_state(state, {"total_registrations": state.get("total_registrations", 0) + 1}, None)
    assert state == {"total_registrations": 3}


def test_fact_rule_replaces_the_state_with_the_updates() -> None:
    current = {"last_result": "0", "old_key": True}
    updates = {"last_result": "1", "last_checked_at": "2026-01-01T00:00:01Z"}
    assert next_state(current, updates, SNAPSHOT) == updates


@pytest.mark.parametrize("rule", [None, SNAPSHOT])
def test_empty_updates_change_nothing(rule: FactOutput | None) -> None:
    assert next_state({"keep": 1}, {}, rule) == {"keep": 1}


def test_state_exactly_at_the_cap_is_accepted() -> None:
    overhead = len(msgspec.json.encode({"blob": ""}))
    updates = {"blob": "x" * (STATE_CAP_BYTES - overhead)}
    state = next_state({}, updates, None)
    assert len(msgspec.json.encode(state)) == STATE_CAP_BYTES


@pytest.mark.parametrize("rule", [None, SNAPSHOT])
def test_state_over_the_cap_fails_and_leaves_the_previous_state_intact(rule: FactOutput | None) -> None:
    current = {"cursor": 41}
    overhead = len(msgspec.json.encode({"cursor": 41, "blob": ""} if rule is None else {"blob": ""}))
    size = STATE_CAP_BYTES + 1
    with pytest.raises(StateError) as caught:
        next_state(current, {"blob": "x" * (size - overhead)}, rule)
    assert str(caught.value) == f"plugin state exceeds 1 MiB limit ({size} bytes)"
    assert caught.value.size == size
    assert current == {"cursor": 41}


def test_cap_applies_to_the_merged_state_not_just_the_updates() -> None:
    half = "x" * (STATE_CAP_BYTES // 2)
    with pytest.raises(StateError):
        next_state({"a": half}, {"b": half}, None)
    assert next_state({"a": half}, {"b": half}, SNAPSHOT) == {"b": half}
