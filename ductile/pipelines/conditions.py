"""``if:`` conditions: compile at load, evaluate against a scope of JSON values (pipelines.md §6).

A condition is exactly one of an atomic ``{path, op, value?}``, ``all: [...]``, ``any: [...]`` or
``not: c``; it nests at most 3 deep and holds at most 20 atomic predicates. Everything that can be
checked without data (operators, operand types, regexes) is checked at load, and every problem is
reported with a pointer such as ``if.all[1].op: unknown operator "like"``.

Evaluation is strict: nothing is coerced, bools are never numbers, numbers compare by value. A
numeric, string or regex operator on an absent or mistyped path is an evaluation error, never a
silent ``false``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ductile.pipelines.errors import LoadProblems
from ductile.pipelines.paths import Path, PathError, parse_path, resolve
from ductile.pipelines.values import is_number, json_equal, json_problem, json_type

MAX_DEPTH = 3
MAX_PREDICATES = 20
ROOTS = frozenset({"payload", "context", "config"})

_NUMERIC: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_TEXT: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda actual, expected: expected in actual,
    "startswith": str.startswith,
    "endswith": str.endswith,
}
OPERATORS = frozenset({"exists", "eq", "neq", "in", "regex", *_NUMERIC, *_TEXT})
_ATOMIC_KEYS = ("path", "op", "value")
_FORMS = ("all", "any", "not")


class ConditionError(LoadProblems):
    """A condition refused at load; one pointer-prefixed problem per line."""


class ConditionEvalError(ValueError):
    """A condition that cannot be evaluated against this data (absent or mistyped operand)."""


@dataclass(frozen=True, slots=True)
class Predicate:
    path: Path
    op: str
    value: Any = None
    pattern: re.Pattern[str] | None = None

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        found, actual = resolve(scope, self.path)
        op = self.op
        if op == "exists":
            return found
        if op == "eq":
            return json_equal(actual, self.value)
        if op == "neq":
            return not json_equal(actual, self.value)
        if op == "in":
            return any(json_equal(actual, candidate) for candidate in self.value)
        if op in _NUMERIC:
            if not found or not is_number(actual):
                raise ConditionEvalError(self._needs("a number", found, actual))
            return _NUMERIC[op](actual, self.value)
        if not found or not isinstance(actual, str):
            raise ConditionEvalError(self._needs("a string", found, actual))
        if self.pattern is not None:
            return self.pattern.fullmatch(actual) is not None
        return _TEXT[op](actual.casefold(), self.value)

    def _needs(self, kind: str, found: bool, actual: Any) -> str:
        got = f"got {json_type(actual)}" if found else "but the path is absent"
        return f"op {self.op} needs {kind} at {self.path}, {got}"


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Node, ...]

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        return all(item.evaluate(scope) for item in self.items)


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Node, ...]

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        return any(item.evaluate(scope) for item in self.items)


@dataclass(frozen=True, slots=True)
class Negation:
    item: Node

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        return not self.item.evaluate(scope)


Node = Predicate | AllOf | AnyOf | Negation


@dataclass(frozen=True, slots=True)
class Condition:
    node: Node
    depth: int
    paths: tuple[Path, ...]

    @property
    def predicates(self) -> int:
        return len(self.paths)

    @property
    def roots_used(self) -> frozenset[str]:
        """The roots this condition reads, e.g. to refuse ``context.*`` in an on-hook ``if``."""
        return frozenset(p.root for p in self.paths)

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        """True or false; ``ConditionEvalError`` when an operand is absent or mistyped."""
        return self.node.evaluate(scope)


def compile_condition(raw: Any, *, roots: Collection[str] = ROOTS, where: str = "if") -> Condition:
    """Validate and compile a raw condition; ``ConditionError`` lists every problem found."""
    compiler = _Compiler(frozenset(roots))
    node = compiler.node(raw, where, 1)
    if compiler.atomics > MAX_PREDICATES:
        compiler.problems.append(
            f"{where}: {compiler.atomics} predicates exceed the maximum of {MAX_PREDICATES}"
        )
    if compiler.problems or node is None:
        raise ConditionError(compiler.problems)
    return Condition(node, _depth(node), tuple(compiler.paths))


class _Compiler:
    def __init__(self, roots: frozenset[str]) -> None:
        self.roots = roots
        self.problems: list[str] = []
        self.paths: list[Path] = []
        self.atomics = 0

    def node(self, raw: Any, ptr: str, level: int) -> Node | None:
        if level > MAX_DEPTH:
            return self._fail(f"{ptr}: nesting depth exceeds the maximum of {MAX_DEPTH}")
        if not isinstance(raw, Mapping):
            return self._fail(f"{ptr}: must be a map, got {json_type(raw)}")
        for key in raw:
            if key not in _ATOMIC_KEYS and key not in _FORMS:
                self._fail(f'{ptr}: unknown key "{key}"')
        forms = (["path/op"] if any(k in raw for k in _ATOMIC_KEYS) else []) + [k for k in _FORMS if k in raw]
        if len(forms) != 1:
            found = f" (found {', '.join(forms)})" if forms else ""
            return self._fail(
                f"{ptr}: must be exactly one of an atomic {{path, op, value}}, all, any or not{found}"
            )
        form = forms[0]
        if form == "not":
            item = self.node(raw["not"], f"{ptr}.not", level + 1)
            return None if item is None else Negation(item)
        if form in ("all", "any"):
            return self._group(form, raw[form], f"{ptr}.{form}", level)
        return self._predicate(raw, ptr)

    def _group(self, form: str, raw: Any, ptr: str, level: int) -> Node | None:
        if not isinstance(raw, list):
            return self._fail(f"{ptr}: must be a list, got {json_type(raw)}")
        if not raw:
            return self._fail(f"{ptr}: must not be empty")
        items = [self.node(item, f"{ptr}[{i}]", level + 1) for i, item in enumerate(raw)]
        if any(item is None for item in items):
            return None
        nodes = tuple(item for item in items if item is not None)
        return AllOf(nodes) if form == "all" else AnyOf(nodes)

    def _predicate(self, raw: Mapping[str, Any], ptr: str) -> Predicate | None:
        self.atomics += 1
        before = len(self.problems)
        path: Path | None = None
        value: Any = None
        pattern: re.Pattern[str] | None = None
        if "path" not in raw:
            self._fail(f"{ptr}: path is required")
        else:
            try:
                path = parse_path(raw["path"], roots=self.roots)
            except PathError as e:
                self._fail(f"{ptr}.path: {e.problem}")
        op = raw.get("op")
        if "op" not in raw:
            self._fail(f"{ptr}: op is required")
        elif not isinstance(op, str):
            self._fail(f"{ptr}.op: must be a string, got {json_type(op)}")
        elif op not in OPERATORS:
            self._fail(f'{ptr}.op: unknown operator "{op}"')
        else:
            value, pattern = self._operand(op, raw, ptr)
        if len(self.problems) > before or path is None or not isinstance(op, str):
            return None
        self.paths.append(path)
        return Predicate(path, op, value, pattern)

    def _operand(self, op: str, raw: Mapping[str, Any], ptr: str) -> tuple[Any, re.Pattern[str] | None]:
        if op == "exists":
            if "value" in raw:
                self._fail(f"{ptr}.value: not allowed with op exists")
            return None, None
        if "value" not in raw:
            self._fail(f"{ptr}: value is required for op {op}")
            return None, None
        value = raw["value"]
        problem = json_problem(value)
        if problem is not None:
            self._fail(f"{ptr}.value: {problem}")
        elif op == "in" and not isinstance(value, list):
            self._fail(f"{ptr}.value: op in needs a list, got {json_type(value)}")
        elif op in _NUMERIC and not is_number(value):
            self._fail(f"{ptr}.value: op {op} needs a number, got {json_type(value)}")
        elif (op in _TEXT or op == "regex") and not isinstance(value, str):
            self._fail(f"{ptr}.value: op {op} needs a string, got {json_type(value)}")
        elif op == "regex":
            try:
                return value, re.compile(value)
            except re.error as e:
                self._fail(f'{ptr}.value: invalid regex "{value}": {e}')
        elif op in _TEXT:
            return value.casefold(), None
        return value, None

    def _fail(self, problem: str) -> None:
        self.problems.append(problem)


def _depth(node: Node) -> int:
    if isinstance(node, Predicate):
        return 1
    if isinstance(node, Negation):
        return 1 + _depth(node.item)
    return 1 + max(_depth(item) for item in node.items)
