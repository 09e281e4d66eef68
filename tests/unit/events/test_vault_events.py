"""Vault events carry names, grants, pattern, status, roll_count and the actor, never a value
(vault.md §3, §14): no field of any vault event, nested Structs included, could hold one."""

from __future__ import annotations

import typing

import msgspec
import pytest

from ductile.events.types import EVENT_TYPES, VAULT_AUDIT_FACTS, VAULT_CHANGES, VaultChange

# Field names that would hold a value, a credential or key material.
FORBIDDEN = {"value", "values", "plaintext", "secret", "secrets_map", "token", "nonce", "key", "identity",
             "password", "minted"}

VAULT_EVENTS = sorted({*VAULT_CHANGES, *VAULT_AUDIT_FACTS}, key=lambda cls: cls.__name__)


def field_names(struct: type[msgspec.Struct], seen: set[type] | None = None) -> set[str]:
    """Every field name of ``struct`` and of the Structs it nests (in lists, dicts, unions)."""
    seen = seen or set()
    if struct in seen:
        return set()
    seen.add(struct)
    names: set[str] = set()
    for f in msgspec.structs.fields(struct):
        names.add(f.name)
        stack = [f.type]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
                names |= field_names(tp, seen)
            stack.extend(typing.get_args(tp))
    return names


@pytest.mark.parametrize("cls", VAULT_EVENTS, ids=lambda cls: cls.__name__)
def test_no_vault_event_has_a_field_that_could_hold_a_value(cls):
    assert not field_names(cls) & FORBIDDEN
    assert cls.__name__ in EVENT_TYPES  # in the one tagged union, so the codec knows it


def test_every_vault_change_carries_the_actor_and_the_blob_hashes():
    assert len(VAULT_CHANGES) == 14
    for cls in VAULT_CHANGES:
        assert issubclass(cls, VaultChange)
        assert {"actor", "blob_sha256", "prev_blob_sha256", "at"} <= {f.name for f in msgspec.structs.fields(cls)}


class Leaky(msgspec.Struct):
    value: str


class Carrier(msgspec.Struct):
    items: dict[str, list[Leaky]] | None = None


def test_the_field_walk_finds_a_nested_value_field():
    assert "value" in field_names(Carrier)
