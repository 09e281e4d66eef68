"""The strict per-file check: YAML types, unknown keys and out-of-scope keys (spec config.md §4.6).

msgspec's own errors elide mapping keys (``$.plugins[...]``), so the schema's type information
is walked here to name the full key path and its line.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi

from ductile.config.errors import ConfigError
from ductile.config.locations import KeyPath, dotted
from ductile.config.schema import UNSUPPORTED_KEYS, RootSchema

UNKNOWN_KEY_MESSAGE = "config: key ignored (not a known field)"


class KeyFinding(msgspec.Struct, frozen=True):
    """A key the schema does not use: unknown, or known but out of scope."""

    path: KeyPath
    unsupported: bool

    @property
    def message(self) -> str:
        if self.unsupported:
            return f"config: {dotted(self.path)} is not supported; ignored"
        return UNKNOWN_KEY_MESSAGE


def check_shape(data: dict[str, Any], file: str, lines: dict[KeyPath, int]) -> list[KeyFinding]:
    """Raise a ConfigError for the first value of the wrong type; return the unused keys."""
    findings: list[KeyFinding] = []
    _walk(data, _root_type(), (), findings, file, lines)
    return findings


@cache
def _root_type() -> mi.Type:
    return mi.type_info(RootSchema)


def _walk(
    value: Any, kind: mi.Type, path: KeyPath, findings: list[KeyFinding], file: str, lines: dict[KeyPath, int]
) -> None:
    if isinstance(kind, mi.UnionType):
        matching = [member for member in kind.types if _matches(value, member)]
        if not matching:
            raise _type_error(value, kind, path, file, lines)
        kind = matching[0]
    if not _matches(value, kind):
        raise _type_error(value, kind, path, file, lines)
    if isinstance(kind, mi.StructType):
        fields = {field.encode_name: field for field in kind.fields}
        for key, item in value.items():
            child = (*path, key)
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                findings.append(KeyFinding((*path, str(key)), unsupported=False))
            elif child in UNSUPPORTED_KEYS:
                findings.append(KeyFinding(child, unsupported=True))
            else:
                _walk(item, field.type, child, findings, file, lines)
    elif isinstance(kind, mi.DictType):
        for key, item in value.items():
            if isinstance(kind.key_type, mi.StrType) and not isinstance(key, str):
                message = f"{dotted(path)}: keys must be strings, got {_describe_value(key)} {key!r}"
                raise ConfigError(message, file=file, line=_line(lines, (*path, key)))
            _walk(item, kind.value_type, (*path, key), findings, file, lines)
    elif isinstance(kind, mi.ListType):
        for index, item in enumerate(value):
            _walk(item, kind.item_type, (*path, index), findings, file, lines)


def _matches(value: Any, kind: mi.Type) -> bool:
    match kind:
        case mi.AnyType():
            return True
        case mi.NoneType():
            return value is None
        case mi.BoolType():
            return isinstance(value, bool)
        case mi.IntType():
            return isinstance(value, int) and not isinstance(value, bool)
        case mi.FloatType():
            return isinstance(value, int | float) and not isinstance(value, bool)
        case mi.StrType():
            return isinstance(value, str)
        case mi.StructType() | mi.DictType():
            return isinstance(value, dict)
        case mi.ListType():
            return isinstance(value, list)
        case mi.UnionType():
            return any(_matches(value, member) for member in kind.types)
    return False


def _type_error(
    value: Any, kind: mi.Type, path: KeyPath, file: str, lines: dict[KeyPath, int]
) -> ConfigError:
    message = f"{dotted(path)}: expected {_describe_type(kind)}, got {_describe_value(value)}"
    return ConfigError(message, file=file, line=_line(lines, path))


def _describe_type(kind: mi.Type) -> str:
    members = list(kind.types) if isinstance(kind, mi.UnionType) else [kind]
    members = [member for member in members if not isinstance(member, mi.NoneType)]
    names = {type(member) for member in members}
    if {mi.StrType, mi.IntType, mi.FloatType} <= names:
        return "a duration (e.g. 30s)"
    return " or ".join(_TYPE_NAMES.get(type(member), "a value") for member in members)


_TYPE_NAMES: dict[type, str] = {
    mi.StrType: "a string",
    mi.IntType: "an integer",
    mi.FloatType: "a number",
    mi.BoolType: "true or false",
    mi.StructType: "a mapping",
    mi.DictType: "a mapping",
    mi.ListType: "a list",
}


def _describe_value(value: Any) -> str:
    # Never the value itself: it may be a token.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _line(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    for size in range(len(path), -1, -1):
        line = lines.get(path[:size])
        if line is not None:
            return line
    return None
