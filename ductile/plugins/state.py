"""Plugin state between runs (plugins.md §8): mirror or shallow merge, capped at 1 MiB."""

from __future__ import annotations

import msgspec

from ductile.plugins.manifest import FactOutput, Manifest

STATE_CAP_BYTES = 1_048_576


class StateError(Exception):
    """The resulting state would exceed the cap; the job fails and nothing is applied."""

    def __init__(self, size: int) -> None:
        super().__init__(f"plugin state exceeds 1 MiB limit ({size} bytes)")
        self.size = size


def fact_rule_for(manifest: Manifest, command: str) -> FactOutput | None:
    for rule in manifest.fact_outputs:
        if rule.command == command:
            return rule
    return None


def next_state(current: dict, updates: dict, fact_rule: FactOutput | None) -> dict:
    """The state after an `ok` run; `current` is never modified."""
    if not updates:  # an empty `state_updates` changes nothing, even under a fact rule
        return dict(current)
    state = dict(updates) if fact_rule is not None else {**current, **updates}
    size = len(msgspec.json.encode(state))
    if size > STATE_CAP_BYTES:
        raise StateError(size)
    return state
