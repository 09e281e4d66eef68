"""Strict JSON equality (pipelines.md §6): no coercion, bools are not numbers, numbers by value."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ductile.pipelines.values import is_number, json_equal, json_problem, json_type


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (30, 30.0, True),
        (0, -0.0, True),
        ([1, {"a": 2}], [1.0, {"a": 2.0}], True),
        ({"a": [30]}, {"a": [30.0]}, True),
        ((1, 2), [1, 2], True),
        ("30", 30, False),
        (True, 1, False),
        (False, 0, False),
        (1.0, True, False),
        ([True], [1], False),
        (None, None, True),
        (None, False, False),
        (None, "", False),
        (None, 0, False),
        ({}, [], False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ("A", "a", False),
        (float("nan"), float("nan"), False),
    ],
)
def test_json_equal_is_strict_about_types_and_compares_numbers_by_value(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "bool"),
        (1, "number"),
        (1.5, "number"),
        ("s", "string"),
        ({}, "object"),
        ([], "list"),
    ],
)
def test_json_type_names_values_for_messages(value: Any, name: str) -> None:
    assert json_type(value) == name


def test_bools_are_never_numbers() -> None:
    assert not is_number(True)
    assert is_number(0)
    assert is_number(0.5)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": [1, "x", None, True, 2.5]}, None),
        (date(2024, 1, 1), "date is not a JSON value"),
        ({1: "a"}, "object key 1 is not a string"),
        ([{"a": date(2024, 1, 1)}], "date is not a JSON value"),
    ],
)
def test_json_problem_names_what_yaml_produced_that_json_cannot_hold(value: Any, problem: str | None) -> None:
    assert json_problem(value) == problem
