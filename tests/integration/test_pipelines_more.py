"""Pipeline behaviour beyond the main suite: call inlining at run time, a gated block bypassed
through ductile.switch.false, dedupe and redelivery, log order of children, relay steps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import TERMINAL, Daemon, wait_until

PLUGINS = {name: {"enabled": True, "uses": "behave"} for name in ("a", "b", "c", "slow")}
PLUGINS["behave"] = {"enabled": True}


def ok(result: str) -> dict[str, Any]:
    return {"mode": "ok", "result": result}


PIPELINES = [
    {"name": "outer", "on": "call.start", "steps": [
        {"id": "pre", "uses": "a", "with": ok("pre")},
        {"id": "sub", "call": "inner"},
        {"id": "post", "uses": "c", "with": ok("post {payload.result}")},
    ]},
    {"name": "inner", "on": "inner.never", "steps": [{"id": "x", "uses": "b", "with": ok("inner {payload.result}")}]},
    {"name": "block", "on": "block.start", "steps": [
        {"id": "first", "uses": "a", "with": {"mode": "emit", "events": [
            {"type": "decided", "payload": {"go": "{payload.go}"}}]}},
        {"id": "blk", "if": {"path": "payload.go", "op": "eq", "value": True},
         "steps": [{"id": "b1", "uses": "b", "with": ok("b1")}, {"id": "b2", "uses": "b", "with": ok("b2")}]},
        {"id": "z", "uses": "c", "with": ok("z")},
    ]},
    {"name": "dedupe", "on": "dd.start", "steps": [{"id": "s", "uses": "slow", "with": {"mode": "sleep", "seconds": 1}}]},
    {"name": "relayed", "on": "relay.start", "steps": [{"id": "r", "relay": {"to": "peer1", "event": "x.y"}}]},
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("pipelines-more") / "gw", PLUGINS, service={"max_workers": 6})
    d.config["pipelines"] = PIPELINES
    d.config["instances"] = [{"name": "peer1", "enabled": True, "base_url": "http://127.0.0.1:9"}]
    d.write_config()
    d.start()
    yield d
    d.close()


def root(gw: Daemon, *events: dict[str, Any]) -> str:
    return gw.trigger("behave", "poll", {"mode": "emit", "events": list(events)})


def settled(gw: Daemon, job_id: str) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        nodes = gw.client.get(f"/job/{job_id}/tree").json()
        return nodes if all(n["status"] in TERMINAL for n in nodes) else None

    return wait_until(done, 30, what=f"tree of {job_id}")


def by_step(tree: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n["step_id"]: n for n in tree[1:]}


def test_call_runs_the_called_steps_in_the_caller_instance_then_continues(gw: Daemon, tmp_path: Path) -> None:
    tree = settled(gw, root(gw, {"type": "call.start", "payload": {}}))
    steps = by_step(tree)
    assert set(steps) == {"pre", "sub/x", "post"}
    assert all(n["pipeline"] == "outer" for n in tree[1:])
    assert steps["sub/x"]["result"]["result"] == "inner pre"
    assert steps["post"]["result"]["result"] == "post inner pre"
    with gw.db() as db:
        instances = {
            db.execute("SELECT json_extract(context, '$.ductile.pipeline_instance_id') FROM event_contexts WHERE id="
                       "(SELECT event_context_id FROM job_queue WHERE job_id=?)", (node["job_id"],)).fetchone()[0]
            for node in tree[1:]
        }
    assert len(instances) == 1, "one pipeline instance across the call"


@pytest.mark.parametrize(("go", "expected"), [(False, {"first", "blk__switch", "z"}),
                                              (True, {"first", "blk__switch", "b1", "b2", "z"})])
def test_a_false_block_condition_bypasses_the_whole_block(gw: Daemon, go: bool, expected: set[str]) -> None:
    tree = settled(gw, root(gw, {"type": "block.start", "payload": {"go": go}}))
    steps = by_step(tree)
    assert set(steps) == expected
    switch = steps["blk__switch"]["result"]
    assert switch == {"matched": go, "event": f"ductile.switch.{str(go).lower()}"}
    assert all(n["status"] == "succeeded" for n in tree)


def test_a_redelivered_event_creates_no_second_child(gw: Daemon) -> None:
    same = {"type": "dd.start", "payload": {}, "event_id": "evt-fixed-1"}
    tree = settled(gw, root(gw, same, same))
    assert len(tree) == 2, "the same (parent, event id, pipeline, step) is dispatched once"


def test_a_deduped_event_is_dropped_while_its_twin_is_outstanding(gw: Daemon) -> None:
    first = gw.trigger("behave", "poll", {"mode": "emit", "events": [{"type": "dd.start", "payload": {},
                                                                       "dedupe_key": "order-9"}]})
    wait_until(lambda: len(gw.client.get(f"/job/{first}/tree").json()) == 2, 10, what="first child")
    second = root(gw, {"type": "dd.start", "payload": {}, "dedupe_key": "order-9"})
    assert len(settled(gw, second)) == 1, "no child while a job with the same key is outstanding"
    with gw.db() as db:
        reasons = [r[0] for r in db.execute("SELECT data FROM events WHERE type='JobDeduped'")]
    assert reasons, "the drop is recorded as a JobDeduped event"
    [child] = [n["job_id"] for n in settled(gw, first)[1:]]
    # jobs.md §4: never silent. One INFO line with the key, the job that holds it and why ...
    drops = wait_until(lambda: [line for line in gw.log_lines()
                                if line.get("msg") == "job deduped" and line.get("dedupe_key") == "order-9"],
                       10, what="the dedupe log line")
    assert [(d["level"], d["existing_job_id"], d["dedupe_reason"]) for d in drops] == [("INFO", child, "outstanding")]
    # ... and the drop is listed under the emitting job's dispatches (pipelines.md §3.5).
    proc = gw.cli("job", "inspect", second, "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dispatches"] == [
        {"event_type": "dd.start", "pipeline": "dedupe", "step_id": "s", "outcome": "deduped", "job_id": child}]


def test_children_precede_their_parent_terminal_event_in_the_log(gw: Daemon) -> None:
    parent = root(gw, {"type": "call.start", "payload": {}})
    tree = settled(gw, parent)
    child = tree[1]["job_id"]
    with gw.db() as db:
        child_enqueued = db.execute("SELECT position FROM events WHERE stream=? AND type='JobEnqueued'",
                                    (f"job-{child}",)).fetchone()[0]
        parent_done = db.execute("SELECT position FROM events WHERE stream=? AND type='JobSucceeded'",
                                 (f"job-{parent}",)).fetchone()[0]
    assert child_enqueued < parent_done


def test_a_relay_step_loads_and_then_fails_as_not_available(gw: Daemon) -> None:
    tree = settled(gw, root(gw, {"type": "relay.start", "payload": {}}))
    relay = by_step(tree)["r"]
    assert relay["plugin"] == "core.relay"
    assert relay["status"] == "failed"
    assert relay["last_error"] == "relay is not available in this release"


def test_an_event_matching_no_pipeline_is_logged_at_debug_and_handled(gw: Daemon) -> None:
    job_id = root(gw, {"type": "nobody.listens", "payload": {}}, {"type": "dd.start", "payload": {}})
    assert [n["status"] for n in settled(gw, job_id)] == ["succeeded", "succeeded"], "handled: the job succeeds"

    def unmatched() -> list[dict[str, Any]]:
        return [line for line in gw.log_lines() if line.get("msg") == "event matched no route"
                and line.get("job_id") == job_id]

    [line] = wait_until(unmatched, 10, what="the no-match DEBUG line")
    assert (line["level"], line["event_type"], line["plugin"]) == ("DEBUG", "nobody.listens", "behave")
