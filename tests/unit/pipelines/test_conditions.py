"""``if:`` conditions (pipelines.md §6): load errors with pointers, limits, operators, strict typing."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ductile.pipelines.conditions import (
    MAX_PREDICATES,
    ConditionError,
    ConditionEvalError,
    compile_condition,
)

ROOTS = {"payload", "context", "config"}


def atom(path: str = "payload.x", op: str = "eq", value: Any = 1) -> dict[str, Any]:
    return {"path": path, "op": op, "value": value}


def evaluate(raw: Any, payload: Any, context: Any = None, config: Any = None) -> bool:
    scope = {"payload": payload, "context": context or {}, "config": config or {}}
    return compile_condition(raw, roots=ROOTS).evaluate(scope)


# --- load errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"all": [atom(), atom(op="like")]}, 'if.all[1].op: unknown operator "like"'),
        (atom(op="EQ"), 'if.op: unknown operator "EQ"'),
        (atom(op=3), "if.op: must be a string, got number"),
        ("payload.x == 1", "if: must be a map, got string"),
        (None, "if: must be a map, got null"),
        ({"all": [[]]}, "if.all[0]: must be a map, got list"),
        ({}, "if: must be exactly one of an atomic {path, op, value}, all, any or not"),
        (
            {"all": [atom()], "any": [atom()]},
            "if: must be exactly one of an atomic {path, op, value}, all, any or not (found all, any)",
        ),
        (
            {**atom(), "not": atom()},
            "if: must be exactly one of an atomic {path, op, value}, all, any or not (found path/op, not)",
        ),
        ({"all": []}, "if.all: must not be empty"),
        ({"any": []}, "if.any: must not be empty"),
        ({"all": atom()}, "if.all: must be a list, got object"),
        ({"any": "x"}, "if.any: must be a list, got string"),
        ({"not": None}, "if.not: must be a map, got null"),
        ({"op": "eq", "value": 1}, "if: path is required"),
        ({"path": "payload.x", "value": 1}, "if: op is required"),
        ({"path": "payload.x", "op": "eq"}, "if: value is required for op eq"),
        ({"path": "payload.x", "op": "gt"}, "if: value is required for op gt"),
        ({**atom(), "vlaue": 2}, 'if: unknown key "vlaue"'),
        (atom(path="payload"), 'if.path: path "payload" must have at least 2 segments'),
        (
            atom(path="event.x"),
            'if.path: unknown root "event" in path "event.x" (allowed: config, context, payload)',
        ),
        (atom(path="payload..x"), 'if.path: path "payload..x" has an empty segment'),
        (atom(path=5), "if.path: path must be a string, got number"),
        ({"path": "payload.x", "op": "exists", "value": True}, "if.value: not allowed with op exists"),
        (atom(op="in", value="a"), "if.value: op in needs a list, got string"),
        (atom(op="gt", value="30"), "if.value: op gt needs a number, got string"),
        (atom(op="gte", value=True), "if.value: op gte needs a number, got bool"),
        (atom(op="lt", value=None), "if.value: op lt needs a number, got null"),
        (atom(op="lte", value=[1]), "if.value: op lte needs a number, got list"),
        (atom(op="contains", value=1), "if.value: op contains needs a string, got number"),
        (atom(op="startswith", value=None), "if.value: op startswith needs a string, got null"),
        (atom(op="endswith", value=["a"]), "if.value: op endswith needs a string, got list"),
        (atom(op="regex", value=1), "if.value: op regex needs a string, got number"),
        (
            atom(op="regex", value="("),
            'if.value: invalid regex "(": missing ), unterminated subpattern at position 0',
        ),
        (atom(value=date(2024, 1, 1)), "if.value: date is not a JSON value"),
        (atom(op="in", value=[{1: "a"}]), "if.value: object key 1 is not a string"),
        (
            {"not": {"any": [atom(), {"all": [atom(op="like")]}]}},
            "if.not.any[1].all[0]: nesting depth exceeds the maximum of 3",
        ),
    ],
)
def test_a_bad_condition_is_a_load_error_with_a_pointer(raw: Any, message: str) -> None:
    with pytest.raises(ConditionError) as err:
        compile_condition(raw, roots=ROOTS)
    assert str(err.value) == message
    assert err.value.problems == (message,)


def test_every_problem_in_a_condition_is_reported_one_per_line() -> None:
    raw = {"all": [atom(op="like"), atom(path="x.y"), {"any": []}]}
    with pytest.raises(ConditionError) as err:
        compile_condition(raw, roots=ROOTS)
    assert err.value.problems == (
        'if.all[0].op: unknown operator "like"',
        'if.all[1].path: unknown root "x" in path "x.y" (allowed: config, context, payload)',
        "if.all[2].any: must not be empty",
    )
    assert str(err.value) == "\n".join(err.value.problems)


def test_the_pointer_starts_at_where() -> None:
    with pytest.raises(ConditionError) as err:
        compile_condition({"not": atom(op="like")}, roots=ROOTS, where="steps[2].if")
    assert str(err.value) == 'steps[2].if.not.op: unknown operator "like"'


# --- limits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (atom(), 1),
        ({"all": [atom()]}, 2),
        ({"not": atom()}, 2),
        ({"any": [atom(), {"not": atom()}]}, 3),
        ({"not": {"not": atom()}}, 3),
        ({"all": [{"any": [atom(), atom()]}, atom()]}, 3),
    ],
)
def test_nesting_up_to_depth_three_compiles(raw: Any, depth: int) -> None:
    assert compile_condition(raw, roots=ROOTS).depth == depth


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        ({"not": {"not": {"not": atom()}}}, "if.not.not.not"),
        ({"all": [{"any": [{"all": [atom()]}]}]}, "if.all[0].any[0].all[0]"),
        ({"any": [atom(), {"not": {"not": atom()}}]}, "if.any[1].not.not"),
    ],
)
def test_depth_four_is_a_load_error_at_the_first_node_too_deep(raw: Any, pointer: str) -> None:
    with pytest.raises(ConditionError) as err:
        compile_condition(raw, roots=ROOTS)
    assert str(err.value) == f"{pointer}: nesting depth exceeds the maximum of 3"


def test_twenty_predicates_compile() -> None:
    raw = {"any": [{"all": [atom()] * 10}, {"all": [atom()] * 10}]}
    assert compile_condition(raw, roots=ROOTS).predicates == MAX_PREDICATES


def test_twenty_one_predicates_are_a_load_error() -> None:
    raw = {"any": [{"all": [atom()] * 10}, {"all": [atom()] * 10}, atom()]}
    with pytest.raises(ConditionError) as err:
        compile_condition(raw, roots=ROOTS)
    assert str(err.value) == "if: 21 predicates exceed the maximum of 20"


# --- roots ------------------------------------------------------------------------------------------


def test_a_hook_if_sees_payload_only() -> None:
    with pytest.raises(ConditionError) as err:
        compile_condition(atom(path="context.repo"), roots={"payload"})
    assert str(err.value) == 'if.path: unknown root "context" in path "context.repo" (allowed: payload)'


def test_roots_used_lets_a_loader_word_the_hook_refusal() -> None:
    cond = compile_condition({"all": [atom("payload.a"), {"not": atom("context.b")}]}, roots=ROOTS)
    assert cond.roots_used == {"payload", "context"}
    assert [str(p) for p in cond.paths] == ["payload.a", "context.b"]


# --- evaluation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "payload", "expected"),
    [
        # exists: present even when null, false when absent
        ({"path": "payload.x", "op": "exists"}, {"x": None}, True),
        ({"path": "payload.x", "op": "exists"}, {"y": 1}, False),
        ({"path": "payload.x.y", "op": "exists"}, {"x": "scalar"}, False),
        # eq / neq: strict types, numbers by value, absent is null
        (atom(value=30), {"x": 30.0}, True),
        (atom(value=30.0), {"x": 30}, True),
        (atom(value=30), {"x": "30"}, False),
        (atom(value="30"), {"x": 30}, False),
        (atom(value=True), {"x": 1}, False),
        (atom(value=1), {"x": True}, False),
        (atom(value=[1, {"a": 2}]), {"x": [1.0, {"a": 2.0}]}, True),
        (atom(value={"a": [30]}), {"x": {"a": [30.0]}}, True),
        (atom(value={"a": 1}), {"x": {"a": 1, "b": 2}}, False),
        (atom(value="ABC"), {"x": "abc"}, False),  # eq is case-sensitive
        (atom(value=None), {}, True),
        (atom(value=None), {"x": None}, True),
        (atom(value=False), {}, False),
        (atom(op="neq", value=1), {}, True),
        (atom(op="neq", value=None), {}, False),
        (atom(op="neq", value=30), {"x": 30.0}, False),
        (atom(op="neq", value="30"), {"x": 30}, True),
        # in
        (atom(op="in", value=["a", 2, None]), {"x": 2.0}, True),
        (atom(op="in", value=["a", 2, None]), {"x": "a"}, True),
        (atom(op="in", value=["a", 2, None]), {}, True),
        (atom(op="in", value=["a", 2]), {"x": True}, False),
        (atom(op="in", value=[[1, 2]]), {"x": [1.0, 2.0]}, True),
        (atom(op="in", value=[]), {"x": 1}, False),
        # numeric
        (atom(op="gt", value=10), {"x": 10.5}, True),
        (atom(op="gt", value=10), {"x": 10}, False),
        (atom(op="gte", value=10), {"x": 10.0}, True),
        (atom(op="lt", value=0.5), {"x": -3}, True),
        (atom(op="lte", value=2), {"x": 2}, True),
        (atom(op="lte", value=2), {"x": 3}, False),
        # text, case-insensitive
        (atom(op="contains", value="ERR"), {"x": "an error here"}, True),
        (atom(op="contains", value="xyz"), {"x": "an error"}, False),
        (atom(op="contains", value=""), {"x": ""}, True),
        (atom(op="startswith", value="Feat"), {"x": "feat: add"}, True),
        (atom(op="startswith", value="fix"), {"x": "feat: add"}, False),
        (atom(op="endswith", value=".PY"), {"x": "main.py"}, True),
        (atom(op="endswith", value=".rs"), {"x": "main.py"}, False),
        # regex: full-string match, case-sensitive unless (?i)
        (atom(op="regex", value="v[0-9]+"), {"x": "v12"}, True),
        (atom(op="regex", value="v[0-9]+"), {"x": "v12-rc"}, False),
        (atom(op="regex", value="[0-9]+"), {"x": "v12"}, False),
        (atom(op="regex", value="v.*"), {"x": "V1"}, False),
        (atom(op="regex", value="(?i)v.*"), {"x": "V1"}, True),
        # lists are indexed by numeric segments
        (atom(path="payload.items.1.id", value="b"), {"items": [{"id": "a"}, {"id": "b"}]}, True),
        ({"path": "payload.items.2", "op": "exists"}, {"items": [1, 2]}, False),
        # combinators
        ({"all": [atom(value=1), atom(path="payload.y", value=2)]}, {"x": 1, "y": 2}, True),
        ({"all": [atom(value=1), atom(path="payload.y", value=2)]}, {"x": 1, "y": 3}, False),
        ({"any": [atom(value=1), atom(path="payload.y", value=2)]}, {"x": 0, "y": 2}, True),
        ({"any": [atom(value=1), atom(path="payload.y", value=2)]}, {"x": 0, "y": 0}, False),
        ({"not": atom(value=1)}, {"x": 1}, False),
        ({"not": {"path": "payload.x", "op": "exists"}}, {}, True),
    ],
)
def test_operators_evaluate_strictly(raw: Any, payload: Any, expected: bool) -> None:
    assert evaluate(raw, payload) is expected


def test_context_and_config_are_separate_roots() -> None:
    raw = {"all": [atom("context.repo.path", value="/r"), atom("config.mode", value="fast")]}
    assert evaluate(raw, {}, context={"repo": {"path": "/r"}}, config={"mode": "fast"}) is True
    assert evaluate(raw, {"repo": {"path": "/r"}, "mode": "fast"}) is False


def test_a_root_missing_from_the_scope_is_absent() -> None:
    cond = compile_condition({"path": "config.x", "op": "exists"}, roots=ROOTS)
    assert cond.evaluate({"payload": {}}) is False


@pytest.mark.parametrize(
    ("raw", "payload", "message"),
    [
        (atom(op="gt", value=1), {"x": "30"}, "op gt needs a number at payload.x, got string"),
        (atom(op="gte", value=1), {"x": True}, "op gte needs a number at payload.x, got bool"),
        (atom(op="lt", value=1), {"x": None}, "op lt needs a number at payload.x, got null"),
        (atom(op="lte", value=1), {"x": [1]}, "op lte needs a number at payload.x, got list"),
        (atom(op="gt", value=1), {}, "op gt needs a number at payload.x, but the path is absent"),
        (atom(op="contains", value="a"), {"x": 1}, "op contains needs a string at payload.x, got number"),
        (
            atom(op="startswith", value="a"),
            {"x": {}},
            "op startswith needs a string at payload.x, got object",
        ),
        (
            atom(op="endswith", value="a"),
            {},
            "op endswith needs a string at payload.x, but the path is absent",
        ),
        (atom(op="regex", value="a"), {"x": None}, "op regex needs a string at payload.x, got null"),
        (
            atom("payload.a.b", op="regex", value="a"),
            {"a": 1},
            "op regex needs a string at payload.a.b, but the path is absent",
        ),
    ],
)
def test_absent_or_mistyped_operands_are_evaluation_errors(raw: Any, payload: Any, message: str) -> None:
    with pytest.raises(ConditionEvalError) as err:
        evaluate(raw, payload)
    assert str(err.value) == message


BOOM = atom("payload.s", op="gt", value=1)  # errors: payload.s is a string


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"all": [atom(value=2), BOOM]}, False),  # all stops at the first false
        ({"any": [atom(value=1), BOOM]}, True),  # any stops at the first true
    ],
)
def test_all_and_any_short_circuit_left_to_right(raw: Any, expected: bool) -> None:
    assert evaluate(raw, {"x": 1, "s": "text"}) is expected


@pytest.mark.parametrize(
    "raw", [{"all": [atom(value=1), BOOM]}, {"any": [atom(value=2), BOOM]}, {"any": [BOOM, atom()]}]
)
def test_an_operand_reached_after_no_short_circuit_still_errors(raw: Any) -> None:
    with pytest.raises(ConditionEvalError, match=r"^op gt needs a number at payload.s, got string$"):
        evaluate(raw, {"x": 1, "s": "text"})


def test_acceptance_examples() -> None:
    # §6 checklist: YAML 30 eq JSON 30.0; "30" eq 30 false; gt on a string errors; neq on absent is true
    assert evaluate(atom(value=30), {"x": 30.0}) is True
    assert evaluate(atom(value="30"), {"x": 30}) is False
    with pytest.raises(ConditionEvalError):
        evaluate(atom(op="gt", value=1), {"x": "a"})
    assert evaluate(atom(op="neq", value=1), {}) is True
