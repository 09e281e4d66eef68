"""JSON values as pipelines see them: type names, strict deep equality and copies (pipelines.md §6).

Nothing is coerced: ``"30"`` is not ``30`` and ``true`` is not ``1`` (Python says ``True == 1``, so
bools are checked before numbers). Numbers compare by value, so ``30 == 30.0``, at any depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_number(value: Any) -> bool:
    """An int or a float; a bool is never a number."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages: ``string``, ``number``, ``bool``, ``null``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def json_equal(a: Any, b: Any) -> bool:
    """Deep equality with JSON's types: bools only equal bools, numbers compare by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if is_number(a) or is_number(b):
        return is_number(a) and is_number(b) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def json_problem(value: Any) -> str | None:
    """Why ``value`` is not plain JSON (e.g. a YAML date or an int map key), or ``None`` when it is."""
    if value is None or isinstance(value, bool | int | float | str):
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"object key {k!r} is not a string"
            problem = json_problem(v)
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for item in value:
            problem = json_problem(item)
            if problem:
                return problem
        return None
    return f"{type(value).__name__} is not a JSON value"


def json_copy(value: Any) -> Any:
    """A deep copy of the containers, so a result never aliases the scope it came from."""
    if isinstance(value, Mapping):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_copy(v) for v in value]
    return value
