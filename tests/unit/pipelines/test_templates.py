"""``with:`` templates (pipelines.md §5): single references keep JSON types, mixed strings render
text, braces escape, load and render errors name ``with.<key>``, and every key sees one snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from ductile.pipelines.templates import (
    TemplateError,
    TemplateEvalError,
    compile_template,
    compile_with,
)

SCOPE: dict[str, Any] = {
    "payload": {
        "count": 30,
        "ratio": 30.0,
        "tenth": 0.1,
        "third": 1 / 3,
        "big": 1e16,
        "tiny": 1e-7,
        "neg": -2.5,
        "ok": True,
        "no": False,
        "nothing": None,
        "name": "build-7",
        "empty": "",
        "obj": {"a": [1, 2.5], "b": "é"},
        "list": [1, "two", None],
        "items": [{"id": "a"}, {"id": "b"}],
    },
    "context": {"repo": {"path": "/srv/repo"}},
    "config": {"channel": "#ops"},
}


def render(template: Any, scope: dict[str, Any] = SCOPE) -> Any:
    return compile_template(template, key="k").render(scope)


# --- whole-string single references keep the JSON type ------------------------------------------------


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("{payload.count}", 30),
        ("{payload.ratio}", 30.0),
        ("{payload.ok}", True),
        ("{payload.nothing}", None),
        ("{payload.obj}", {"a": [1, 2.5], "b": "é"}),
        ("{payload.list}", [1, "two", None]),
        ("{payload.name}", "build-7"),
        ("{ payload.count }", 30),  # whitespace inside the braces is trimmed
        ("{payload.items.1.id}", "b"),
        ("{context.repo.path}", "/srv/repo"),
        ("{config.channel}", "#ops"),
    ],
)
def test_a_whole_string_reference_yields_the_value_with_its_type(template: str, value: Any) -> None:
    result = render(template)
    assert result == value
    assert type(result) is type(value)


def test_a_referenced_object_is_a_copy_not_the_scope_itself() -> None:
    result = render("{payload.obj}")
    result["a"].append(3)
    assert SCOPE["payload"]["obj"]["a"] == [1, 2.5]


# --- mixed strings render as text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("Build {payload.count}: {payload.name}", "Build 30: build-7"),
        ("n={payload.ratio}", "n=30"),  # integral float → integer digits
        ("n={payload.big}", "n=10000000000000000"),
        ("n={payload.tenth}", "n=0.1"),  # shortest round-trip
        ("n={payload.third}", "n=0.3333333333333333"),
        ("n={payload.tiny}", "n=1e-07"),
        ("n={payload.neg}", "n=-2.5"),
        ("{payload.ok}/{payload.no}", "true/false"),
        ("[{payload.nothing}]", "[]"),  # null → ""
        ("[{payload.empty}]", "[]"),
        ("obj={payload.obj}", 'obj={"a":[1,2.5],"b":"é"}'),  # compact JSON, UTF-8
        ("list={payload.list}", 'list=[1,"two",null]'),
        (" {payload.count}", " 30"),  # text outside the braces makes it mixed
        ("{payload.count}{payload.count}", "3030"),
        ("plain text", "plain text"),
        ("", ""),
        ("{{literal}}", "{literal}"),
        ("{{{payload.count}}}", "{30}"),
        ("a }} b {{ c", "a } b { c"),
        ("{{payload.count}}", "{payload.count}"),
    ],
)
def test_a_mixed_template_always_renders_a_string(template: str, text: str) -> None:
    assert render(template) == text


def test_a_big_integer_renders_all_its_digits() -> None:
    assert render("n={payload.n}", {"payload": {"n": 10**40}}) == "n=1" + "0" * 40


def test_an_integer_too_long_to_print_is_a_render_error() -> None:
    with pytest.raises(TemplateEvalError, match=r'^with.k: number at "payload.n" is too large to render$'):
        render("n={payload.n}", {"payload": {"n": 10**5000}})


def test_a_value_json_cannot_encode_is_a_render_error() -> None:
    with pytest.raises(TemplateEvalError, match=r'^with.k: value at "payload.o" is not JSON$'):
        render("o={payload.o}", {"payload": {"o": {"f": object()}}})


def test_strings_nested_in_maps_and_lists_are_templates_and_other_values_are_copied() -> None:
    template = {
        "title": "Build {payload.count}",
        "tags": ["{payload.name}", 7, None, {"n": "{payload.ratio}"}],
        "on": True,
    }
    assert render(template) == {"title": "Build 30", "tags": ["build-7", 7, None, {"n": 30.0}], "on": True}


@pytest.mark.parametrize("value", [3, 2.5, True, None])
def test_non_string_values_are_copied_as_they_are(value: Any) -> None:
    assert render(value) == value


# --- load errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Build {payload.count", 'with.k: unclosed "{" at position 6'),
        ("{", 'with.k: unclosed "{" at position 0'),
        ("a } b", 'with.k: stray "}" at position 2 (write "}}" for a literal brace)'),
        ("{payload.count}}", 'with.k: stray "}" at position 15 (write "}}" for a literal brace)'),
        ("x {} y", 'with.k: empty reference "{}" at position 2'),
        ("{   }", 'with.k: empty reference "{}" at position 0'),
        ("{payload.{x}}", 'with.k: nested "{" at position 9'),
        ("{event.x}", 'with.k: unknown root "event" in path "event.x" (allowed: config, context, payload)'),
        ("{payload}", 'with.k: path "payload" must have at least 2 segments'),
        ("{payload..x}", 'with.k: path "payload..x" has an empty segment'),
        ("{payload.a b}", 'with.k: path "payload.a b" has whitespace in segment "a b"'),
        ({"deep": ["ok", "{bad"]}, 'with.k.deep[1]: unclosed "{" at position 0'),
    ],
)
def test_template_syntax_errors_are_load_errors(template: Any, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        compile_template(template, key="k")
    assert str(err.value) == message


def test_roots_can_be_narrowed_by_the_caller() -> None:
    with pytest.raises(TemplateError) as err:
        compile_template("{config.x}", key="k", roots=("payload", "context"))
    assert str(err.value) == 'with.k: unknown root "config" in path "config.x" (allowed: context, payload)'


def test_template_paths_are_listed() -> None:
    template = compile_template({"a": "{payload.x} {context.y}", "b": ["{config.z}"]}, key="k")
    assert [str(p) for p in template.paths] == ["payload.x", "context.y", "config.z"]


# --- render errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{payload.x}", 'with.k: path "payload.x" not found'),
        ("Build {payload.x}", 'with.k: path "payload.x" not found'),
        ("{payload.items.5.id}", 'with.k: path "payload.items.5.id" not found'),
        ("{payload.name.first}", 'with.k: path "payload.name.first" not found'),
        ({"a": ["{context.nope}"]}, 'with.k.a[0]: path "context.nope" not found'),
    ],
)
def test_a_missing_path_is_a_render_error_never_null_or_empty(template: Any, message: str) -> None:
    with pytest.raises(TemplateEvalError) as err:
        render(template)
    assert str(err.value) == message


def test_a_missing_root_is_a_missing_path() -> None:
    with pytest.raises(TemplateEvalError, match=r'^with.k: path "config.channel" not found$'):
        render("{config.channel}", {"payload": {}})


# --- with: ------------------------------------------------------------------------------------------


def test_with_adds_and_overrides_top_level_keys() -> None:
    spec = compile_with({"message": "Build {payload.count}", "count": "{payload.ratio}", "fixed": 1})
    assert spec.apply({"count": 30, "other": "kept"}, SCOPE) == {
        "count": 30.0,
        "other": "kept",
        "message": "Build 30",
        "fixed": 1,
    }


def test_every_with_template_reads_the_snapshot_taken_before_the_remap() -> None:
    payload = {"a": "A", "b": "B"}
    spec = compile_with({"a": "{payload.b}", "b": "{payload.a}", "c": "{payload.a}{payload.b}"})
    assert spec.apply(payload, {"payload": payload}) == {"a": "B", "b": "A", "c": "AB"}
    assert payload == {"a": "A", "b": "B"}


def test_with_is_all_or_nothing_when_a_path_is_missing() -> None:
    payload = {"a": 1}
    spec = compile_with({"x": "{payload.a}", "y": "{payload.missing}"})
    with pytest.raises(TemplateEvalError, match=r'^with.y: path "payload.missing" not found$'):
        spec.apply(payload, {"payload": payload})
    assert payload == {"a": 1}


def test_every_with_key_is_checked_and_all_problems_reported() -> None:
    with pytest.raises(TemplateError) as err:
        compile_with({"a": "{x.y}", "b": "ok", "c": "{", 3: "v", "": "v"})
    assert err.value.problems == (
        'with.a: unknown root "x" in path "x.y" (allowed: config, context, payload)',
        'with.c: unclosed "{" at position 0',
        "with: key 3 must be a non-empty string",
        "with: key '' must be a non-empty string",
    )


def test_with_must_be_a_map() -> None:
    with pytest.raises(TemplateError, match=r"^with: must be a map, got list$"):
        compile_with(["a"])
