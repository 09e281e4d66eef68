"""``with:`` templates: payload remaps with ``{root.path}`` references (pipelines.md §5).

A string that is exactly one reference yields the referenced value with its JSON type; any other
string with references renders to a string. Strings nested in maps and lists are templates too;
other values are copied as they are. ``{{`` and ``}}`` are literal braces. Syntax and roots are
checked at load; a path missing at render time is an error, never a silent null or ``""``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ductile.pipelines.errors import LoadProblems
from ductile.pipelines.paths import Path, PathError, parse_path, resolve
from ductile.pipelines.values import json_copy, json_type

ROOTS = ("payload", "context", "config")


class TemplateError(LoadProblems):
    """A ``with:`` refused at load; one ``with.<key>: ...`` problem per line."""


class TemplateEvalError(ValueError):
    """A template that cannot render against this data, e.g. ``with.msg: path "payload.x" not found``."""


class _Syntax(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Reference:
    """A whole string that is exactly one reference: renders to the value, type kept."""

    pointer: str
    path: Path

    def render(self, scope: Mapping[str, Any]) -> Any:
        return json_copy(_lookup(scope, self.path, self.pointer))


@dataclass(frozen=True, slots=True)
class Interpolation:
    """Literal text and references: always renders to a string."""

    pointer: str
    parts: tuple[str | Path, ...]

    def render(self, scope: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(_as_text(_lookup(scope, part, self.pointer), part, self.pointer))
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Constant:
    value: Any

    def render(self, scope: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class MapTemplate:
    items: tuple[tuple[Any, Part], ...]

    def render(self, scope: Mapping[str, Any]) -> dict[Any, Any]:
        return {key: part.render(scope) for key, part in self.items}


@dataclass(frozen=True, slots=True)
class ListTemplate:
    items: tuple[Part, ...]

    def render(self, scope: Mapping[str, Any]) -> list[Any]:
        return [part.render(scope) for part in self.items]


Part = Reference | Interpolation | Constant | MapTemplate | ListTemplate


@dataclass(frozen=True, slots=True)
class Template:
    key: str
    part: Part
    paths: tuple[Path, ...]

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The value for ``key``; ``TemplateEvalError`` when a referenced path is not found."""
        return self.part.render(scope)


@dataclass(frozen=True, slots=True)
class WithSpec:
    templates: Mapping[str, Template]

    def apply(self, event_payload: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
        """``event_payload`` with each key added or overridden.

        Every template renders against ``scope`` before any key is written, so one key's result
        never feeds another's (the snapshot rule of §5).
        """
        rendered = {key: template.render(scope) for key, template in self.templates.items()}
        return {**event_payload, **rendered}


def compile_template(value: Any, *, key: str, roots: Collection[str] = ROOTS) -> Template:
    """Compile one ``with`` value; ``TemplateError`` lists every problem found in it."""
    compiler = _Compiler(frozenset(roots))
    part = compiler.part(value, f"with.{key}")
    if compiler.problems:
        raise TemplateError(compiler.problems)
    return Template(key, part, tuple(compiler.paths))


def compile_with(mapping: Any, *, roots: Collection[str] = ROOTS) -> WithSpec:
    """Compile a whole ``with:`` map; ``TemplateError`` lists the problems of every key."""
    if not isinstance(mapping, Mapping):
        raise TemplateError(f"with: must be a map, got {json_type(mapping)}")
    problems: list[str] = []
    templates: dict[str, Template] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            problems.append(f"with: key {key!r} must be a non-empty string")
            continue
        try:
            templates[key] = compile_template(value, key=key, roots=roots)
        except TemplateError as e:
            problems.extend(e.problems)
    if problems:
        raise TemplateError(problems)
    return WithSpec(templates)


class _Compiler:
    def __init__(self, roots: frozenset[str]) -> None:
        self.roots = roots
        self.problems: list[str] = []
        self.paths: list[Path] = []

    def part(self, value: Any, pointer: str) -> Part:
        if isinstance(value, str):
            try:
                parts = _scan(value, self.roots)
            except _Syntax as e:
                self.problems.append(f"{pointer}: {e}")
                return Constant(value)
            self.paths.extend(p for p in parts if isinstance(p, Path))
            if len(parts) == 1 and isinstance(parts[0], Path):
                return Reference(pointer, parts[0])
            if any(isinstance(p, Path) for p in parts):
                return Interpolation(pointer, tuple(parts))
            return Constant("".join(p for p in parts if isinstance(p, str)))
        if isinstance(value, Mapping):
            return MapTemplate(tuple((k, self.part(v, f"{pointer}.{k}")) for k, v in value.items()))
        if isinstance(value, list | tuple):
            return ListTemplate(tuple(self.part(v, f"{pointer}[{i}]") for i, v in enumerate(value)))
        return Constant(value)


def _scan(text: str, roots: frozenset[str]) -> list[str | Path]:
    """Split a template into literal runs and references, refusing bad brace syntax."""
    parts: list[str | Path] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "}":
            raise _Syntax(f'stray "}}" at position {i} (write "}}}}" for a literal brace)')
        elif char == "{":
            end = i + 1
            while end < n and text[end] not in "{}":
                end += 1
            if end == n:
                raise _Syntax(f'unclosed "{{" at position {i}')
            if text[end] == "{":
                raise _Syntax(f'nested "{{" at position {end}')
            inner = text[i + 1 : end].strip()
            if not inner:
                raise _Syntax(f'empty reference "{{}}" at position {i}')
            try:
                path = parse_path(inner, roots=roots)
            except PathError as e:
                raise _Syntax(e.problem) from None
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(path)
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal or not parts:
        parts.append("".join(literal))
    return parts


def _lookup(scope: Mapping[str, Any], path: Path, pointer: str) -> Any:
    found, value = resolve(scope, path)
    if not found:
        raise TemplateEvalError(f'{pointer}: path "{path}" not found')
    return value


def _as_text(value: Any, path: Path, pointer: str) -> str:
    """How a value is written into a mixed string (§5)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # integral floats print as integers so YAML 30 and JSON 30.0 render alike; repr is shortest round-trip
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # Python refuses to print ints of more than 4300 digits
            raise TemplateEvalError(f'{pointer}: number at "{path}" is too large to render') from None
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        raise TemplateEvalError(f'{pointer}: value at "{path}" is not JSON') from None
