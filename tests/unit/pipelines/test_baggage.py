"""Baggage (pipelines.md §7): mapping and bulk forms, reserved destinations, claims, immutable
deep merge, and the 1 MiB context measure."""

from __future__ import annotations

from typing import Any

import pytest

from ductile.pipelines.baggage import (
    CONTEXT_CAP,
    BaggageError,
    BaggageSpecError,
    compile_baggage,
    context_size,
    merge_context,
)

PAYLOAD: dict[str, Any] = {
    "repo_path": "/srv/repo",
    "meta": {"lang": "en", "model": {"size": "small"}},
    "n": 3,
    "items": [{"id": "a"}],
}
CONTEXT: dict[str, Any] = {"ductile": {"route_depth": 1}, "intake": {"id": "A-17"}}


# --- load -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "claims"),
    [
        ({"repo.path": "payload.repo_path"}, {"repo": {"path": "/srv/repo"}}),
        ({"repo": "payload.repo_path"}, {"repo": "/srv/repo"}),
        (
            {"repo.path": "payload.repo_path", "repo.count": "payload.n", "intake_id": "context.intake.id"},
            {"repo": {"path": "/srv/repo", "count": 3}, "intake_id": "A-17"},
        ),
        ({"first": "payload.items.0.id"}, {"first": "a"}),
        ({"m": "payload.meta"}, {"m": {"lang": "en", "model": {"size": "small"}}}),
        ({"_x.Y_2": "payload.n"}, {"_x": {"Y_2": 3}}),
        ({"a.ductile_x": "payload.n"}, {"a": {"ductile_x": 3}}),  # only the top segment is reserved
        ({}, {}),
        (
            {"from": "payload.meta", "namespace": "whisper"},
            {"whisper": {"lang": "en", "model": {"size": "small"}}},
        ),
        ({"from": "payload.meta.model", "namespace": "a.b"}, {"a": {"b": {"size": "small"}}}),
        ({"from": "payload", "namespace": "all"}, {"all": PAYLOAD}),
        ({"from": "context.intake", "namespace": "up"}, {"up": {"id": "A-17"}}),
    ],
)
def test_claims_are_read_from_the_payload_and_parent_context(
    raw: dict[str, Any], claims: dict[str, Any]
) -> None:
    assert compile_baggage(raw).claims(PAYLOAD, CONTEXT) == claims


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("repo.path", "baggage: must be a map, got string"),
        (
            {"ductile.route_depth": "payload.n"},
            'baggage: destination "ductile.route_depth" is in the reserved ductile namespace',
        ),
        ({"ductile": "payload.n"}, 'baggage: destination "ductile" is in the reserved ductile namespace'),
        (
            {"ductile_plugin": "payload.n"},
            'baggage: destination "ductile_plugin" uses the reserved ductile_ prefix',
        ),
        (
            {"ductile_x.y": "payload.n"},
            'baggage: destination "ductile_x.y" uses the reserved ductile_ prefix',
        ),
        (
            {"1repo": "payload.n"},
            'baggage: invalid destination "1repo" (segment "1repo" must match [A-Za-z_][A-Za-z0-9_]*)',
        ),
        (
            {"repo-path": "payload.n"},
            'baggage: invalid destination "repo-path" (segment "repo-path" must match [A-Za-z_][A-Za-z0-9_]*)',
        ),
        (
            {"repo..path": "payload.n"},
            'baggage: invalid destination "repo..path" (segment "" must match [A-Za-z_][A-Za-z0-9_]*)',
        ),
        ({"": "payload.n"}, 'baggage: invalid destination "" (segment "" must match [A-Za-z_][A-Za-z0-9_]*)'),
        ({3: "payload.n"}, "baggage: destination must be a string, got number"),
        (
            {"repo": "config.x"},
            'baggage: source of "repo": unknown root "config" in path "config.x" (allowed: context, payload)',
        ),
        ({"repo": "payload"}, 'baggage: source of "repo": path "payload" must have at least 2 segments'),
        ({"repo": 5}, 'baggage: source of "repo": path must be a string, got number'),
        ({"a": "payload.n", "a.b": "payload.n"}, 'baggage: destinations "a" and "a.b" overlap'),
        ({"from": "payload.meta"}, "baggage: namespace is required with from"),
        (
            {"from": "payload.meta", "namespace": "w", "repo.path": "payload.repo_path"},
            'baggage: the bulk form takes exactly from and namespace (unexpected "repo.path")',
        ),
        (
            {"from": "payload.meta", "namespace": "ductile"},
            'baggage: namespace "ductile" is in the reserved ductile namespace',
        ),
        (
            {"from": "payload.meta", "namespace": "ductile_meta"},
            'baggage: namespace "ductile_meta" uses the reserved ductile_ prefix',
        ),
        (
            {"from": "payload.meta", "namespace": "bad name"},
            'baggage: invalid namespace "bad name" (segment "bad name" must match [A-Za-z_][A-Za-z0-9_]*)',
        ),
        ({"from": "payload.meta", "namespace": None}, "baggage: namespace must be a string, got null"),
        (
            {"from": "context", "namespace": "w"},
            'baggage: from: path "context" must have at least 2 segments',
        ),
        (
            {"from": "config.x", "namespace": "w"},
            'baggage: from: unknown root "config" in path "config.x" (allowed: context, payload)',
        ),
    ],
)
def test_a_bad_baggage_map_is_a_load_error(raw: Any, message: str) -> None:
    with pytest.raises(BaggageSpecError) as err:
        compile_baggage(raw)
    assert str(err.value) == message


def test_every_baggage_problem_is_reported() -> None:
    with pytest.raises(BaggageSpecError) as err:
        compile_baggage({"ductile.x": "payload.a", "ok": "payload.b", "y": "nope.z"})
    assert err.value.problems == (
        'baggage: destination "ductile.x" is in the reserved ductile namespace',
        'baggage: source of "y": unknown root "nope" in path "nope.z" (allowed: context, payload)',
    )


# --- claims -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"repo.path": "payload.missing"}, 'baggage: source path "payload.missing" not found'),
        ({"x": "context.intake.nope"}, 'baggage: source path "context.intake.nope" not found'),
        ({"x": "payload.items.3"}, 'baggage: source path "payload.items.3" not found'),
        ({"from": "payload.nope", "namespace": "w"}, 'baggage: source path "payload.nope" not found'),
        ({"from": "payload.n", "namespace": "w"}, 'baggage: from "payload.n" must be an object, got number'),
        (
            {"from": "payload.items", "namespace": "w"},
            'baggage: from "payload.items" must be an object, got list',
        ),
    ],
)
def test_a_missing_or_unusable_source_is_a_dispatch_error(raw: Any, message: str) -> None:
    spec = compile_baggage(raw)
    with pytest.raises(BaggageError) as err:
        spec.claims(PAYLOAD, CONTEXT)
    assert str(err.value) == message


def test_claims_are_copies_not_aliases_of_the_payload() -> None:
    claims = compile_baggage({"from": "payload.meta", "namespace": "w"}).claims(PAYLOAD, CONTEXT)
    claims["w"]["model"]["size"] = "large"
    assert PAYLOAD["meta"]["model"]["size"] == "small"


# --- merge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "claims", "merged"),
    [
        ({}, {"repo": {"path": "/r"}}, {"repo": {"path": "/r"}}),
        ({"repo": {"path": "/r"}}, {"repo": {"sha": "abc"}}, {"repo": {"path": "/r", "sha": "abc"}}),
        ({"repo": {"path": "/r"}}, {"repo": {"path": "/r"}}, {"repo": {"path": "/r"}}),  # same value is fine
        ({"n": 30}, {"n": 30.0}, {"n": 30}),  # numbers by value
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"d": 2}}, "e": 3}, {"a": {"b": {"c": 1, "d": 2}}, "e": 3}),
        ({"ductile": {"route_depth": 2}}, {"w": {}}, {"ductile": {"route_depth": 2}, "w": {}}),
        ({"x": [1, 2]}, {"x": [1, 2]}, {"x": [1, 2]}),
        ({"a": 1}, {}, {"a": 1}),
    ],
)
def test_merge_adds_new_paths_deeply_and_accepts_repeats(
    parent: dict[str, Any], claims: dict[str, Any], merged: dict[str, Any]
) -> None:
    assert merge_context(parent, claims) == merged


@pytest.mark.parametrize(
    ("parent", "claims", "path"),
    [
        ({"repo": {"path": "/r"}}, {"repo": {"path": "/other"}}, "repo.path"),
        ({"repo": {"path": "/r"}}, {"repo": "/r"}, "repo"),
        ({"repo": "/r"}, {"repo": {"path": "/r"}}, "repo"),
        ({"n": 1}, {"n": True}, "n"),  # bools are not numbers
        ({"n": "30"}, {"n": 30}, "n"),
        ({"x": [1, 2]}, {"x": [1, 2, 3]}, "x"),
        ({"a": {"b": {"c": None}}}, {"a": {"b": {"c": 0}}}, "a.b.c"),
    ],
)
def test_changing_an_inherited_value_is_refused(
    parent: dict[str, Any], claims: dict[str, Any], path: str
) -> None:
    with pytest.raises(BaggageError) as err:
        merge_context(parent, claims)
    assert str(err.value) == f'baggage: path "{path}" is immutable (inherited value differs)'


def test_merge_never_changes_or_aliases_the_parent() -> None:
    parent = {"repo": {"path": "/r"}}
    merged = merge_context(parent, {"repo": {"sha": "abc"}})
    merged["repo"]["path"] = "/changed"
    assert parent == {"repo": {"path": "/r"}}


def test_mapping_claims_merge_into_an_inherited_context() -> None:
    claims = compile_baggage({"intake.status": "payload.n"}).claims(PAYLOAD, CONTEXT)
    assert merge_context(CONTEXT, claims) == {
        "ductile": {"route_depth": 1},
        "intake": {"id": "A-17", "status": 3},
    }


# --- size -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctx", "size"),
    [
        ({}, 2),
        ({"a": 1}, 7),  # {"a":1}, compact
        ({"a": "é"}, 10),  # UTF-8 bytes, not characters
        ({"a": [1, {"b": None}]}, len('{"a":[1,{"b":null}]}')),
    ],
)
def test_context_size_is_compact_utf8_json_bytes(ctx: dict[str, Any], size: int) -> None:
    assert context_size(ctx) == size


def test_the_cap_is_one_mebibyte() -> None:
    assert CONTEXT_CAP == 1_048_576
    at_cap = {"x": "a" * (CONTEXT_CAP - len('{"x":""}'))}
    assert context_size(at_cap) == CONTEXT_CAP
    assert context_size({"x": at_cap["x"] + "a"}) > CONTEXT_CAP
