"""Dotted paths (pipelines.md §6): parsing, allowed roots, and resolving to present or absent."""

from __future__ import annotations

from typing import Any

import pytest

from ductile.pipelines.paths import PathError, parse_path, resolve

ROOTS = {"payload", "context", "config"}
SCOPE: dict[str, Any] = {
    "payload": {
        "a": {"b": 1, "n": None, "s": "text"},
        "items": [{"id": "x"}, {"id": "y"}],
        "0": "key zero",
        "empty": {},
    },
    "context": {"repo": {"path": "/srv/repo"}},
}


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        ("payload.a", ("payload", "a")),
        ("payload.a.b", ("payload", "a", "b")),
        ("context.repo.path", ("context", "repo", "path")),
        ("config.x", ("config", "x")),
        ("payload.items.0.id", ("payload", "items", "0", "id")),
        ("payload.with-dash", ("payload", "with-dash")),
    ],
)
def test_valid_paths_split_into_segments(raw: str, segments: tuple[str, ...]) -> None:
    path = parse_path(raw, roots=ROOTS)
    assert path.segments == segments
    assert path.root == segments[0]
    assert str(path) == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "path must be a string, got null"),
        (3, "path must be a string, got number"),
        ("", "path must not be empty"),
        ("payload", 'path "payload" must have at least 2 segments'),
        ("payload..a", 'path "payload..a" has an empty segment'),
        ("payload.a.", 'path "payload.a." has an empty segment'),
        (".payload.a", 'path ".payload.a" has an empty segment'),
        ("payload.a b", 'path "payload.a b" has whitespace in segment "a b"'),
        ("event.x", 'unknown root "event" in path "event.x" (allowed: config, context, payload)'),
        ("Payload.x", 'unknown root "Payload" in path "Payload.x" (allowed: config, context, payload)'),
    ],
)
def test_malformed_paths_are_refused_with_their_problem(raw: Any, message: str) -> None:
    with pytest.raises(PathError) as err:
        parse_path(raw, roots=ROOTS)
    assert str(err.value) == message


def test_unknown_root_error_names_the_root_so_callers_can_word_their_own_refusal() -> None:
    with pytest.raises(PathError) as err:
        parse_path("context.x", roots={"payload"})
    assert err.value.root == "context"
    assert str(err.value) == 'unknown root "context" in path "context.x" (allowed: payload)'


def test_any_root_is_accepted_when_the_caller_gives_no_roots() -> None:
    assert parse_path("whatever.x").root == "whatever"


@pytest.mark.parametrize(
    ("path", "found", "value"),
    [
        ("payload.a.b", True, 1),
        ("payload.a", True, {"b": 1, "n": None, "s": "text"}),
        ("payload.a.n", True, None),
        ("payload.items.1.id", True, "y"),
        ("payload.items.0", True, {"id": "x"}),
        ("payload.0", True, "key zero"),  # a numeric segment on an object is a key
        ("context.repo.path", True, "/srv/repo"),
        ("payload.missing", False, None),
        ("payload.a.missing", False, None),
        ("payload.items.2.id", False, None),  # index out of range
        ("payload.items.id", False, None),  # a name does not index a list
        ("payload.items.-1", False, None),  # no negative indexes
        ("payload.a.b.c", False, None),  # walking into a scalar
        ("payload.a.s.0", False, None),  # strings are scalars, not lists
        ("payload.a.n.x", False, None),  # null is a scalar
        ("payload.empty.x", False, None),
        ("config.x", False, None),  # root not in scope
        ("payload.items." + "9" * 5000, False, None),  # huge index: absent, not a crash
    ],
)
def test_resolve_walks_keys_and_list_indexes_and_stops_at_absent(path: str, found: bool, value: Any) -> None:
    assert resolve(SCOPE, parse_path(path)) == (found, value)


def test_resolve_accepts_a_plain_string_path() -> None:
    assert resolve(SCOPE, "payload.items.0.id") == (True, "x")
