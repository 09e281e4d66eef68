"""Properties of pipeline expressions (pipelines.md §5–7) over arbitrary JSON.

- a valid condition always compiles, and evaluating it on any JSON scope gives a bool or a
  ``ConditionEvalError``, never anything else; ``exists``/``eq``/``neq``/``in`` never error;
- a valid template always compiles, and rendering it gives a value or a ``TemplateEvalError``; a
  mixed template always renders a string; escaped literal text renders back to itself;
- a whole-string single reference returns exactly the referenced value, type included;
- numbers compare by value (an int equals the float of the same value, at any depth), bools never
  equal numbers;
- ``merge_context`` changes nothing when the claims are already present, so it is idempotent.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.pipelines.baggage import BaggageError, merge_context
from ductile.pipelines.conditions import ConditionEvalError, compile_condition
from ductile.pipelines.templates import TemplateEvalError, compile_template

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOTS = ("payload", "context", "config")
SEGMENTS = ("a", "b", "c", "x", "0", "1")

keys = st.sampled_from(SEGMENTS) | st.text(max_size=4)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(keys, json_values, max_size=5)
scopes = st.fixed_dictionaries({}, optional={root: json_values for root in ROOTS})
paths = st.builds(
    lambda root, rest: ".".join([root, *rest]),
    st.sampled_from(ROOTS),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3),
)
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=4)
REGEXES = ("a.*", "(?i)A", "[0-9]+", "", ".*", "(x|y)?", "(?i)^b.c$")

equalities = st.builds(
    lambda p, op, v: {"path": p, "op": op, "value": v}, paths, st.sampled_from(["eq", "neq"]), json_values
)
safe_atomics = st.one_of(
    st.builds(lambda p: {"path": p, "op": "exists"}, paths),
    equalities,
    st.builds(lambda p, v: {"path": p, "op": "in", "value": v}, paths, st.lists(json_values, max_size=4)),
)
atomics = st.one_of(
    safe_atomics,
    st.builds(
        lambda p, op, v: {"path": p, "op": op, "value": v},
        paths,
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        numbers,
    ),
    st.builds(
        lambda p, op, v: {"path": p, "op": op, "value": v},
        paths,
        st.sampled_from(["contains", "startswith", "endswith"]),
        texts,
    ),
    st.builds(lambda p, v: {"path": p, "op": "regex", "value": v}, paths, st.sampled_from(REGEXES)),
)


def _compound(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        inner,
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    )


# depth ≤ 3 and at most 3·3 = 9 predicates: always within the §6 limits
conditions = _compound(_compound(atomics))
safe_conditions = _compound(_compound(safe_atomics))


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


references = st.builds(
    lambda p, lpad, rpad: "{" + lpad + p + rpad + "}",
    paths,
    st.sampled_from(["", " "]),
    st.sampled_from(["", "  "]),
)
template_strings = st.lists(texts.map(_escape) | references, max_size=5).map("".join)
non_strings = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
templates = st.recursive(
    template_strings | non_strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


def strictly_same(a: Any, b: Any) -> bool:
    """Equal, and of the same Python type at every depth (so 1 vs 1.0 vs True all differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- conditions -------------------------------------------------------------------------------------


@PROPS
@given(raw=conditions, scope=scopes)
def test_evaluating_a_valid_condition_gives_a_bool_or_an_evaluation_error(
    raw: dict[str, Any], scope: dict[str, Any]
) -> None:
    condition = compile_condition(raw, roots=set(ROOTS))
    assert condition.depth <= 3
    try:
        result = condition.evaluate(scope)
    except ConditionEvalError as e:
        assert str(e).startswith("op ")
    else:
        assert isinstance(result, bool)


@PROPS
@given(raw=safe_conditions, scope=scopes)
def test_exists_eq_neq_and_in_never_fail_to_evaluate(raw: dict[str, Any], scope: dict[str, Any]) -> None:
    assert isinstance(compile_condition(raw, roots=set(ROOTS)).evaluate(scope), bool)


@PROPS
@given(raw=equalities, scope=scopes)
def test_neq_is_the_negation_of_eq(raw: dict[str, Any], scope: dict[str, Any]) -> None:
    eq = compile_condition({**raw, "op": "eq"}, roots=set(ROOTS)).evaluate(scope)
    neq = compile_condition({**raw, "op": "neq"}, roots=set(ROOTS)).evaluate(scope)
    assert eq is not neq


exact_ints = st.integers(min_value=-(2**53), max_value=2**53)


@PROPS
@given(n=exact_ints, wrap=st.sampled_from(["bare", "list", "object", "in"]), float_in_data=st.booleans())
def test_numbers_compare_by_value_at_any_depth(n: int, wrap: str, float_in_data: bool) -> None:
    data, literal = (float(n), n) if float_in_data else (n, float(n))
    if wrap == "list":
        data, literal = [1, data], [1, literal]
    elif wrap == "object":
        data, literal = {"k": [data]}, {"k": [literal]}
    payload = {"x": data}
    if wrap == "in":
        assert compile_condition(
            {"path": "payload.x", "op": "in", "value": ["n", literal]}, roots={"payload"}
        ).evaluate({"payload": payload})
        return
    scope = {"payload": payload}
    assert compile_condition({"path": "payload.x", "op": "eq", "value": literal}, roots={"payload"}).evaluate(
        scope
    )
    assert not compile_condition(
        {"path": "payload.x", "op": "neq", "value": literal}, roots={"payload"}
    ).evaluate(scope)


@PROPS
@given(actual=numbers, expected=numbers, op=st.sampled_from(["gt", "gte", "lt", "lte"]))
def test_numeric_operators_agree_with_numeric_order(
    actual: int | float, expected: int | float, op: str
) -> None:
    condition = compile_condition({"path": "payload.x", "op": op, "value": expected}, roots={"payload"})
    want = {
        "gt": actual > expected,
        "gte": actual >= expected,
        "lt": actual < expected,
        "lte": actual <= expected,
    }[op]
    assert condition.evaluate({"payload": {"x": actual}}) is want


@PROPS
@given(flag=st.booleans(), n=st.integers(min_value=-2, max_value=2) | st.sampled_from([0.0, 1.0]))
def test_bools_never_equal_numbers(flag: bool, n: int | float) -> None:
    condition = compile_condition({"path": "payload.x", "op": "eq", "value": n}, roots={"payload"})
    assert condition.evaluate({"payload": {"x": flag}}) is False


# --- templates --------------------------------------------------------------------------------------


@PROPS
@given(value=templates, scope=scopes)
def test_rendering_a_valid_template_gives_a_value_or_a_render_error(
    value: Any, scope: dict[str, Any]
) -> None:
    template = compile_template(value, key="k")
    try:
        template.render(scope)
    except TemplateEvalError as e:
        assert str(e).startswith("with.k")


@PROPS
@given(
    reference=references,
    literal=st.text(min_size=1, max_size=4).map(_escape),
    rest=st.lists(texts.map(_escape) | references, max_size=4),
    scope=scopes,
)
def test_a_mixed_template_always_renders_a_string(
    reference: str, literal: str, rest: list[str], scope: dict[str, Any]
) -> None:
    # a reference plus non-empty literal text is never a whole-string reference
    try:
        result = compile_template(reference + literal + "".join(rest), key="k").render(scope)
    except TemplateEvalError:
        return
    assert isinstance(result, str)


@PROPS
@given(value=json_values, literal=st.text(min_size=1, max_size=4).map(_escape))
def test_a_present_reference_in_a_mixed_template_renders_without_error(value: Any, literal: str) -> None:
    assert isinstance(
        compile_template("{payload.v}" + literal, key="k").render({"payload": {"v": value}}), str
    )


@PROPS
@given(text=st.text(max_size=20))
def test_escaped_literal_text_renders_to_itself(text: str) -> None:
    assert compile_template(_escape(text), key="k").render({}) == text


identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,4}", fullmatch=True)


@PROPS
@given(
    root=st.sampled_from(ROOTS),
    segments=st.lists(identifiers, min_size=1, max_size=4),
    value=json_values,
    pad=st.sampled_from(["", " "]),
)
def test_a_whole_string_reference_returns_exactly_the_referenced_value(
    root: str, segments: list[str], value: Any, pad: str
) -> None:
    data: Any = value
    for segment in reversed(segments):
        data = {segment: data}
    template = compile_template("{" + pad + ".".join([root, *segments]) + pad + "}", key="k")
    assert strictly_same(template.render({root: data}), value)


@PROPS
@given(items=st.lists(json_values, min_size=1, max_size=5), data=st.data())
def test_a_reference_into_a_list_returns_exactly_that_item(items: list[Any], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(items) - 1))
    template = compile_template(f"{{payload.items.{index}}}", key="k")
    assert strictly_same(template.render({"payload": {"items": items}}), items[index])


# --- baggage ----------------------------------------------------------------------------------------


def _subtree(data: st.DataObject, obj: dict[str, Any]) -> dict[str, Any]:
    """Some of ``obj``'s paths, with the values they have in ``obj``."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        choice = data.draw(st.sampled_from(["skip", "take", "descend"]))
        if choice == "take" or (choice == "descend" and not isinstance(value, dict)):
            out[key] = value
        elif choice == "descend":
            out[key] = _subtree(data, value)
    return out


@PROPS
@given(parent=json_objects, data=st.data())
def test_merging_claims_already_present_changes_nothing(parent: dict[str, Any], data: st.DataObject) -> None:
    claims = _subtree(data, parent)
    assert merge_context(parent, claims) == parent


@PROPS
@given(parent=json_objects, claims=json_objects)
def test_merge_context_is_idempotent(parent: dict[str, Any], claims: dict[str, Any]) -> None:
    try:
        merged = merge_context(parent, claims)
    except BaggageError:
        return  # a conflicting claim; the immutability rule is tested in the unit suite
    assert merge_context(merged, claims) == merged
