"""Pipeline load-time validation and compilation to a graph (pipelines.md §1–§3.1, §3.6).

Every row of the §2 error table, the doctor error for a disabled plugin, unknown-key warnings,
and the graph each step kind compiles to: entries, labelled edges, terminals, automatic depth and
the ``compiled_routes`` of ``GET /config/view``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from ductile.pipelines.baggage import compile_baggage
from ductile.pipelines.compiler import Compiled, compile_pipelines
from ductile.pipelines.conditions import compile_condition
from ductile.pipelines.errors import LoadProblems
from ductile.pipelines.graph import SWITCH_FALSE, SWITCH_PLUGIN, SWITCH_TRUE, Pipeline
from ductile.pipelines.templates import compile_with

ENABLED = {"fetch", "policy", "notify", "archive", "publish"}
DISABLED = "legacy"  # configured, but enabled: false
CONFIGURED = ENABLED | {DISABLED}
GO = {"path": "payload.go", "op": "eq", "value": True}


def compile_(*pipelines: dict[str, Any]) -> Compiled:
    return compile_pipelines(
        list(pipelines), enabled=set(ENABLED), configured=set(CONFIGURED)
    )


def pipe(name: str = "p", steps: Any = None, **keys: Any) -> dict[str, Any]:
    """A raw pipeline on ``repo.synced``; ``on_hook=`` swaps the trigger for ``on-hook``."""
    raw: dict[str, Any] = {"name": name}
    if "on_hook" in keys:
        raw["on-hook"] = keys.pop("on_hook")
    else:
        raw["on"] = keys.pop("on", "repo.synced")
    raw.update(keys)
    raw["steps"] = [{"id": "first", "uses": "fetch"}] if steps is None else steps
    return raw


def compiled(*pipelines: dict[str, Any]) -> dict[str, Pipeline]:
    out = compile_(*pipelines)
    assert out.errors == [] and out.doctor == [], (out.errors, out.doctor)
    return out.pipelines


def edges(p: Pipeline) -> set[tuple[str, str, str | None]]:
    return {(src, e.target, e.label) for src, out in p.edges.items() for e in out}


def problems_of(fn: Any, *args: Any) -> tuple[str, ...]:
    """The lines a pipelines sub-compiler reports for ``args`` (its own pointer-prefixed text)."""
    with pytest.raises(LoadProblems) as exc:
        fn(*args)
    return exc.value.problems


# --- §2 load errors, one per row of the table ------------------------------------------------------

PIPELINE_ERRORS = [
    pytest.param(pipe(on_hook="job.failed") | {"on": "repo.synced"},
                 "exactly one of on or on-hook is required", id="both-triggers"),
    pytest.param({"name": "p", "steps": [{"uses": "fetch"}]},
                 "exactly one of on or on-hook is required", id="neither-trigger"),
    pytest.param(pipe(on_hook="job.done"),
                 "on-hook must be one of job.completed, job.failed, job.timed_out", id="bad-hook-signal"),
    pytest.param(pipe(on="  ductile.step.succeeded "),
                 "on must not use the reserved ductile. namespace", id="reserved-on-namespace"),
    pytest.param(pipe(from_plugin="nobody"),
                 'from_plugin "nobody" is not a configured plugin', id="unknown-from-plugin"),
    pytest.param(pipe(max_depth=-1), "max_depth must be >= 0", id="negative-max-depth"),
    pytest.param(pipe(execution_mode="parallel"),
                 "execution_mode must be async or synchronous", id="bad-execution-mode"),
    pytest.param(pipe(timeout="soon"), 'invalid timeout "soon"', id="unparsable-timeout"),
    pytest.param(pipe(timeout="0s"), 'invalid timeout "0s"', id="zero-timeout"),
    pytest.param(pipe(steps=[]), "steps must not be empty", id="empty-steps"),
    pytest.param({"name": "p", "on": "repo.synced"}, "steps must not be empty", id="missing-steps"),
]


@pytest.mark.parametrize(("raw", "detail"), PIPELINE_ERRORS)
def test_a_pipeline_level_problem_is_reported_as_pipeline_name_colon_detail(raw: dict[str, Any], detail: str) -> None:
    out = compile_(raw)
    assert out.errors == [f'pipeline "p": {detail}']
    assert out.pipelines == {}


STEP_ERRORS = [
    pytest.param([{"id": "tell", "uses": "nobody"}], "tell",
                 'uses "nobody" is not a configured plugin', id="unknown-uses"),
    pytest.param([{"id": "blk", "steps": []}], "blk", "steps must not be empty", id="empty-nested-steps"),
    pytest.param([{"id": "fan", "split": []}], "fan", "split must not be empty", id="empty-split"),
    pytest.param([{"id": "s"}], "s",
                 "step must have exactly one of uses, call, steps, split, relay", id="no-step-kind"),
    pytest.param([{"id": "s", "uses": "fetch", "call": "p"}], "s",
                 "step must have exactly one of uses, call, steps, split, relay", id="two-step-kinds"),
    pytest.param([{"id": "blk", "steps": [{"uses": "fetch"}], "with": {"k": "v"}}], "blk",
                 "with is only allowed on uses steps", id="with-on-steps-block"),
    pytest.param([{"id": "fan", "split": [{"uses": "fetch"}], "baggage": {"repo": "payload.repo"}}], "fan",
                 "baggage is only allowed on uses steps", id="baggage-on-split"),
    pytest.param([{"id": "pub", "call": "nowhere"}], "pub", 'call "nowhere": unknown pipeline', id="unknown-call"),
    pytest.param([{"id": "s", "uses": "fetch.poll"}], "s",
                 'uses "fetch.poll": pipeline steps always run handle', id="uses-non-handle-command"),
    pytest.param([{"id": "r", "relay": {"to": "ghost", "event": "x"}}], "r",
                 'relay.to "ghost": unknown relay instance', id="unknown-relay-instance"),
    pytest.param([{"id": "r", "relay": {"event": "x"}}], "r", "relay.to is required", id="relay-without-to"),
]


@pytest.mark.parametrize(("steps", "step_id", "detail"), STEP_ERRORS)
def test_a_step_problem_is_reported_as_pipeline_step_colon_detail(
    steps: list[dict[str, Any]], step_id: str, detail: str
) -> None:
    out = compile_(pipe(steps=steps))
    assert out.errors == [f'pipeline "p" step "{step_id}": {detail}']
    assert out.pipelines == {}


def test_a_relay_step_to_a_configured_instance_compiles_to_a_relay_node() -> None:
    out = compile_pipelines([pipe(steps=[{"id": "r", "relay": {"to": "peer1", "event": "x"}}])], enabled=set(ENABLED),
                            configured=set(CONFIGURED), relay_instances={"peer1"})
    assert out.errors == []
    assert out.pipelines["p"].nodes["r"].plugin == "core.relay"


def test_a_pipeline_without_a_name_is_reported_by_its_index() -> None:
    out = compile_(pipe("ok"), {"on": "repo.synced", "steps": [{"uses": "fetch"}]}, pipe(""))
    assert out.errors == ["pipelines[1]: name is required", "pipelines[2]: name is required"]
    assert list(out.pipelines) == ["ok"]


# An id problem names the id in its detail, so either located form of §2 carries the information.
def assert_id_error(errors: list[str], pipeline: str, detail: str) -> None:
    assert len(errors) == 1, errors
    located = rf'pipeline "{re.escape(pipeline)}"( step "[^"]+")?: {re.escape(detail)}'
    assert re.fullmatch(located, errors[0]), errors[0]


@pytest.mark.parametrize(
    ("steps", "detail"),
    [
        pytest.param([{"id": "s", "uses": "fetch"}, {"id": "s", "uses": "notify"}],
                     'duplicate step id "s"', id="explicit-twice"),
        # The first step's automatic id is step_1, so an explicit step_1 later clashes with it.
        pytest.param([{"uses": "fetch"}, {"id": "step_1", "uses": "notify"}],
                     'duplicate step id "step_1"', id="explicit-clashes-with-earlier-auto"),
        pytest.param([{"id": "step_2", "uses": "fetch"}, {"uses": "notify"}],
                     'duplicate step id "step_2"', id="auto-clashes-with-earlier-explicit"),
        pytest.param([{"id": "blk", "steps": [{"id": "s", "uses": "fetch"}]}, {"id": "s", "uses": "notify"}],
                     'duplicate step id "s"', id="nested-and-top-level"),
    ],
)
def test_a_step_id_clash_is_a_load_error(steps: list[dict[str, Any]], detail: str) -> None:
    out = compile_(pipe(steps=steps))
    assert_id_error(out.errors, "p", detail)
    assert out.pipelines == {}


@pytest.mark.parametrize("bad", ["9lives", "has space", "a.b", "", "gate__switch"])
def test_an_invalid_step_id_or_one_ending_in_switch_is_a_load_error(bad: str) -> None:
    out = compile_(pipe(steps=[{"id": bad, "uses": "fetch"}]))
    assert_id_error(out.errors, "p", f'invalid step id "{bad}"')


@pytest.mark.parametrize("good", ["a", "_x", "Step-2_b", "switch", "gate__switched"])
def test_a_valid_step_id_is_accepted(good: str) -> None:
    assert list(compiled(pipe(steps=[{"id": good, "uses": "fetch"}]))["p"].nodes) == [good]


def test_a_call_cycle_is_reported_with_the_whole_chain() -> None:
    out = compile_(
        pipe("a", steps=[{"id": "to_b", "call": "b"}]),
        pipe("b", on="other", steps=[{"id": "to_a", "call": "a"}]),
    )
    cycle_a = [e for e in out.errors if e.startswith('pipeline "a"')]
    assert len(cycle_a) == 1 and re.fullmatch(r'pipeline "a" step "[^"]+": call cycle: a -> b -> a', cycle_a[0])
    assert any(e.endswith(": call cycle: b -> a -> b") for e in out.errors), out.errors
    assert out.pipelines == {}


def test_a_pipeline_calling_itself_is_a_call_cycle() -> None:
    out = compile_(pipe("a", steps=[{"id": "again", "call": "a"}]))
    assert out.errors == ['pipeline "a" step "again": call cycle: a -> a']


BAD_CONDITION = {"all": [GO, {"path": "payload.kind", "op": "like", "value": "x"}]}


def test_a_bad_step_condition_is_reported_with_its_pointer_after_the_step() -> None:
    lines = problems_of(compile_condition, BAD_CONDITION)
    assert lines == ('if.all[1].op: unknown operator "like"',)
    out = compile_(pipe(steps=[{"id": "gate", "uses": "fetch", "if": BAD_CONDITION}]))
    assert out.errors == [f'pipeline "p" step "gate": {line}' for line in lines]


def test_a_bad_trigger_condition_is_reported_with_its_pointer_after_the_pipeline() -> None:
    out = compile_(pipe(**{"if": BAD_CONDITION}))
    assert out.errors == ['pipeline "p": if.all[1].op: unknown operator "like"']


def test_a_condition_with_several_problems_reports_each_on_its_own_line() -> None:
    raw = {"any": [{"path": "payload.a", "op": "like"}, {"path": "x", "op": "eq", "value": 1}]}
    lines = problems_of(compile_condition, raw)
    assert len(lines) >= 2
    out = compile_(pipe(steps=[{"id": "gate", "uses": "fetch", "if": raw}]))
    assert out.errors == [f'pipeline "p" step "gate": {line}' for line in lines]


def test_context_in_an_on_hook_trigger_condition_is_a_load_error() -> None:
    out = compile_(pipe(on_hook="job.failed", **{"if": {"all": [GO, {"path": "context.repo", "op": "exists"}]}}))
    assert out.errors == ['pipeline "p": if: context.* is not allowed in on-hook pipelines']


def test_context_in_an_on_trigger_condition_and_in_a_hook_pipelines_step_condition_is_allowed() -> None:
    ctx = {"path": "context.repo.path", "op": "exists"}
    compiled(
        pipe("on", **{"if": ctx}),
        pipe("hook", on_hook="job.failed", steps=[{"id": "s", "uses": "fetch", "if": ctx}]),
    )


def test_a_template_syntax_error_is_reported_as_with_key_after_the_step() -> None:
    bad = {"message": "Build {payload.n", "ok": "{payload.n}"}
    lines = problems_of(compile_with, bad)
    assert len(lines) == 1 and lines[0].startswith("with.message: ")
    out = compile_(pipe(steps=[{"id": "tell", "uses": "notify", "with": bad}]))
    assert out.errors == [f'pipeline "p" step "tell": {lines[0]}']


def test_a_bad_baggage_claim_is_reported_as_baggage_after_the_step() -> None:
    bad = {"ductile.depth": "payload.x", "repo.path": "nowhere"}
    lines = problems_of(compile_baggage, bad)
    assert len(lines) == 2 and all(line.startswith("baggage: ") for line in lines)
    out = compile_(pipe(steps=[{"id": "claim", "uses": "policy", "baggage": bad}]))
    assert out.errors == [f'pipeline "p" step "claim": {line}' for line in lines]


def test_uses_with_the_handle_suffix_is_the_same_as_the_bare_plugin() -> None:
    node = compiled(pipe(steps=[{"id": "s", "uses": "fetch.handle"}]))["p"].nodes["s"]
    assert (node.plugin, node.command) == ("fetch", "handle")


def test_every_error_of_a_config_is_reported_not_only_the_first() -> None:
    out = compile_(
        pipe("one", on=None, timeout="soon", max_depth=-2, steps=[
            {"id": "a", "uses": "nobody"},
            {"id": "b", "split": []},
        ]),
        pipe("ok"),
        {"on": "x", "steps": [{"uses": "fetch"}]},
        pipe("two", on_hook="job.done", execution_mode="later", steps=[{"id": "c", "call": "missing"}]),
    )
    assert sorted(out.errors) == sorted([
        'pipeline "one": exactly one of on or on-hook is required',
        'pipeline "one": max_depth must be >= 0',
        'pipeline "one": invalid timeout "soon"',
        'pipeline "one" step "a": uses "nobody" is not a configured plugin',
        'pipeline "one" step "b": split must not be empty',
        "pipelines[2]: name is required",
        'pipeline "two": on-hook must be one of job.completed, job.failed, job.timed_out',
        'pipeline "two": execution_mode must be async or synchronous',
        'pipeline "two" step "c": call "missing": unknown pipeline',
    ])
    assert list(out.pipelines) == ["ok"]


def test_a_non_string_from_plugin_is_a_load_error_not_a_crash() -> None:
    out = compile_(pipe(from_plugin=["fetch"]))
    assert len(out.errors) == 1 and out.errors[0].startswith('pipeline "p": from_plugin '), out.errors


def test_a_non_string_pipeline_key_is_an_unknown_key_warning_not_a_crash() -> None:
    out = compile_(pipe() | {1: "x"})
    assert out.errors == [] and list(out.pipelines) == ["p"]
    assert len(out.warnings) == 1 and "unknown key" in out.warnings[0]


# --- doctor errors and warnings --------------------------------------------------------------------


def test_a_step_using_a_disabled_plugin_is_a_doctor_error_that_leaves_only_that_pipeline_out() -> None:
    out = compile_(
        pipe("old", steps=[{"uses": "fetch"}, {"uses": DISABLED}, {"uses": DISABLED}]),
        pipe("fine"),
    )
    assert out.errors == []
    assert out.doctor == [f'pipeline "old": uses "{DISABLED}" is disabled']
    assert list(out.pipelines) == ["fine"]


def test_from_plugin_naming_a_disabled_plugin_is_the_same_doctor_error() -> None:
    out = compile_(pipe("old", from_plugin=DISABLED), pipe("fine"))
    assert out.errors == []
    assert out.doctor == [f'pipeline "old": uses "{DISABLED}" is disabled']
    assert list(out.pipelines) == ["fine"]


def test_unknown_keys_in_a_pipeline_or_step_are_warnings_not_errors() -> None:
    out = compile_(pipe(colour="red", steps=[{"id": "s", "uses": "fetch", "flavour": 1}]))
    assert out.errors == [] and out.doctor == []
    assert list(out.pipelines) == ["p"]
    assert len(out.warnings) == 2
    on_pipeline = next(w for w in out.warnings if '"colour"' in w)
    on_step = next(w for w in out.warnings if '"flavour"' in w)
    assert on_pipeline.startswith('pipeline "p": ') and "unknown key" in on_pipeline
    assert on_step.startswith('pipeline "p" step "s": ') and "unknown key" in on_step


# --- §3.1 the graph ----------------------------------------------------------------------------------


def test_a_three_step_sequence_is_a_chain_of_unlabelled_edges() -> None:
    p = compiled(pipe(steps=[
        {"id": "first", "uses": "fetch"}, {"id": "second", "uses": "policy"}, {"id": "third", "uses": "notify"},
    ]))["p"]
    assert p.entries == ["first"]
    assert edges(p) == {("first", "second", None), ("second", "third", None)}
    assert p.terminals == ["third"]
    assert p.max_depth == 3
    assert {(n.id, n.kind, n.plugin, n.command) for n in p.nodes.values()} == {
        ("first", "step", "fetch", "handle"), ("second", "step", "policy", "handle"),
        ("third", "step", "notify", "handle"),
    }


def test_a_gated_uses_step_gets_a_switch_node_whose_true_and_false_edges_both_reach_the_step() -> None:
    p = compiled(pipe(steps=[
        {"id": "one", "uses": "fetch"}, {"id": "gate", "uses": "policy", "if": GO}, {"id": "three", "uses": "notify"},
    ]))["p"]
    switch = p.nodes["gate__switch"]
    assert (switch.kind, switch.plugin, switch.gates) == ("switch", SWITCH_PLUGIN, "gate")
    assert edges(p) == {
        ("one", "gate__switch", None),
        ("gate__switch", "gate", SWITCH_TRUE),
        ("gate__switch", "gate", SWITCH_FALSE),
        ("gate", "three", None),
    }
    assert p.max_depth == 4, "switches count in the automatic depth"


def test_a_gated_first_step_makes_its_switch_the_entry() -> None:
    p = compiled(pipe(steps=[{"id": "gate", "uses": "fetch", "if": GO}]))["p"]
    assert p.entries == ["gate__switch"]
    assert p.terminals == ["gate"]


def test_a_gated_steps_block_false_edge_bypasses_to_the_successors() -> None:
    p = compiled(pipe(steps=[
        {"id": "one", "uses": "fetch"},
        {"id": "blk", "if": GO, "steps": [{"id": "in1", "uses": "policy"}, {"id": "in2", "uses": "notify"}]},
        {"id": "after", "uses": "archive"},
    ]))["p"]
    assert edges(p) == {
        ("one", "blk__switch", None),
        ("blk__switch", "in1", SWITCH_TRUE),
        ("blk__switch", "after", SWITCH_FALSE),
        ("in1", "in2", None),
        ("in2", "after", None),
    }
    assert "blk" not in p.nodes, "a steps block has no node of its own"
    assert p.max_depth == 5


def test_split_entries_and_exits_are_the_union_of_its_branches() -> None:
    p = compiled(pipe(steps=[
        {"id": "one", "uses": "fetch"},
        {"id": "fan", "split": [
            {"id": "left", "uses": "notify"},
            {"id": "right", "steps": [{"id": "r1", "uses": "archive"}, {"id": "r2", "uses": "publish"}]},
        ]},
        {"id": "after", "uses": "policy"},
    ]))["p"]
    assert edges(p) == {
        ("one", "left", None), ("one", "r1", None),
        ("r1", "r2", None),
        ("left", "after", None), ("r2", "after", None),
    }
    assert "fan" not in p.nodes
    assert p.max_depth == 4  # one, r1, r2, after


def test_a_split_at_the_start_and_end_gives_several_entries_and_terminals() -> None:
    p = compiled(pipe(steps=[{"split": [{"id": "a", "uses": "fetch"}, {"id": "b", "uses": "notify"}]}]))["p"]
    assert sorted(p.entries) == ["a", "b"]
    assert p.terminals == ["a", "b"]
    assert p.edges == {}


def test_call_inlines_the_callee_with_prefixed_ids_and_the_caller_continues_after_each_exit() -> None:
    pipelines = compiled(
        pipe("main", steps=[{"id": "one", "uses": "fetch"}, {"id": "pub", "call": "site"}, {"id": "after", "uses": "policy"}]),
        pipe("site", on="site.build", steps=[
            {"id": "build", "uses": "archive"},
            {"split": [{"id": "push", "uses": "publish"}, {"uses": "notify"}]},
        ]),
    )
    p = pipelines["main"]
    # site's own automatic ids count its own steps: the split is step_2, its second branch step_4.
    assert set(p.nodes) == {"one", "pub/build", "pub/push", "pub/step_4", "after"}
    assert p.nodes["pub/step_4"].plugin == "notify"
    assert edges(p) == {
        ("one", "pub/build", None),
        ("pub/build", "pub/push", None), ("pub/build", "pub/step_4", None),
        ("pub/push", "after", None), ("pub/step_4", "after", None),
    }
    assert p.max_depth == 4
    assert set(pipelines["site"].nodes) == {"build", "push", "step_4"}, "the callee still compiles on its own"


def test_a_called_pipelines_own_trigger_keys_are_ignored_when_it_is_called() -> None:
    p = compiled(
        pipe("main", steps=[{"id": "pub", "call": "site"}]),
        pipe("site", on_hook="job.failed", from_plugin="fetch", execution_mode="synchronous", timeout="1s",
             **{"if": GO}, steps=[{"id": "push", "uses": "publish"}]),
    )["main"]
    assert set(p.nodes) == {"pub/push"}, "the callee's trigger if gives no switch in the caller"
    assert (p.on, p.from_plugin, p.synchronous, p.timeout) == ("repo.synced", None, False, 30.0)


def test_nested_calls_prefix_every_level() -> None:
    p = compiled(
        pipe("a", steps=[{"id": "x", "call": "b"}]),
        pipe("b", on="b", steps=[{"id": "y", "call": "c"}]),
        pipe("c", on="c", steps=[{"id": "z", "uses": "fetch"}]),
    )["a"]
    assert list(p.nodes) == ["x/y/z"]


def test_automatic_ids_follow_depth_first_document_order_counting_every_step() -> None:
    p = compiled(pipe(steps=[
        {"uses": "fetch"},                                           # step_1
        {"steps": [                                                  # step_2 (no node)
            {"uses": "policy"},                                      # step_3
            {"split": [{"uses": "notify"}, {"uses": "archive"}]},    # step_4 (no node): step_5, step_6
        ]},
        {"id": "named", "uses": "publish"},                          # the 7th step, named
        {"uses": "fetch"},                                           # step_8
    ]))["p"]
    assert {n: p.nodes[n].plugin for n in p.nodes} == {
        "step_1": "fetch", "step_3": "policy", "step_5": "notify", "step_6": "archive",
        "named": "publish", "step_8": "fetch",
    }
    assert edges(p) == {
        ("step_1", "step_3", None), ("step_3", "step_5", None), ("step_3", "step_6", None),
        ("step_5", "named", None), ("step_6", "named", None), ("named", "step_8", None),
    }


# --- §3.6 automatic max depth ------------------------------------------------------------------------


@pytest.mark.parametrize(("max_depth", "effective"), [(None, 3), (0, 3), (1, 1), (10, 10)])
def test_an_explicit_max_depth_wins_over_the_automatic_one(max_depth: int | None, effective: int) -> None:
    keys = {} if max_depth is None else {"max_depth": max_depth}
    steps = [{"uses": "fetch"}, {"uses": "policy"}, {"uses": "notify"}]
    assert compiled(pipe(steps=steps, **keys))["p"].max_depth == effective


def test_the_automatic_depth_is_the_longest_path_not_the_node_count() -> None:
    p = compiled(pipe(steps=[
        {"split": [{"uses": "fetch"}, {"steps": [{"uses": "policy"}, {"uses": "notify"}, {"uses": "archive"}]}]},
        {"uses": "publish"},
    ]))["p"]
    assert len(p.nodes) == 5
    assert p.max_depth == 4


# --- compiled_routes ---------------------------------------------------------------------------------


def test_routes_list_the_entries_every_transition_and_the_terminals() -> None:
    p = compiled(pipe("flow", from_plugin="fetch", steps=[
        {"id": "first", "uses": "fetch"}, {"id": "gate", "uses": "notify", "if": GO},
    ]))["flow"]
    routes = p.routes()
    shapes = [(r["source"], r["destination"]) for r in routes]
    step = {"kind": "step", "command": "handle"}
    assert ({"trigger": "repo.synced", "source_plugin": "fetch"},
            {**step, "step_id": "first", "plugin": "fetch"}) in shapes
    assert ({"pipeline": "flow", "step_id": "first"},
            {"kind": "switch", "step_id": "gate__switch", "plugin": SWITCH_PLUGIN, "command": "switch"}) in shapes
    for label in (SWITCH_TRUE, SWITCH_FALSE):
        assert ({"pipeline": "flow", "step_id": "gate__switch", "event_type": label},
                {**step, "step_id": "gate", "plugin": "notify"}) in shapes
    assert ({"pipeline": "flow", "step_id": "gate"}, {"kind": "terminal"}) in shapes
    assert len(routes) == 5  # 1 entry + 3 transitions + 1 terminal
    assert all(isinstance(r["id"], str) and r["id"] for r in routes)


def test_an_on_hook_pipelines_entry_route_names_its_hook_signal() -> None:
    p = compiled(pipe("hooked", on_hook="job.failed", steps=[{"id": "tell", "uses": "notify"}]))["hooked"]
    assert [(r["source"], r["destination"]) for r in p.routes()] == [
        ({"hook_signal": "job.failed"}, {"kind": "step", "step_id": "tell", "plugin": "notify", "command": "handle"}),
        ({"pipeline": "hooked", "step_id": "tell"}, {"kind": "terminal"}),
    ]


def test_every_route_id_is_unique() -> None:
    p = compiled(pipe(steps=[{"id": "gate", "uses": "notify", "if": GO}]))["p"]
    ids = [r["id"] for r in p.routes()]
    assert len(ids) == len(set(ids)), ids


def test_an_entry_route_of_a_pipeline_with_a_trigger_if_shows_the_if() -> None:
    p = compiled(pipe(**{"if": GO}))["p"]
    entry = next(r for r in p.routes() if "trigger" in r["source"])
    assert "if" in entry["source"]
