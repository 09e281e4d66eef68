"""Pipelines end to end against the real daemon (pipelines.md §3–§9).

One gateway serves most tests: every pipeline has its own trigger type, and each test follows
the job tree of its own root job, so the tests do not see each other's work. A parent's children
are written in the same transaction as its terminal event (§3.5), so once every job of a tree is
terminal the tree is complete: "nothing more was started" is checked without waiting.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ductile.events.log import read_stream
from tests.integration.daemon import TERMINAL, TOKEN, Daemon, wait_until
from tests.integration.sse import SseReader

READER_TOKEN = "pipelines-reader-token"
ONE_TRY = {"max_attempts": 1}


def instance(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "uses": "behave", "retry": ONE_TRY, **extra}


PLUGINS = {
    "behave": {"enabled": True, "retry": ONE_TRY},
    "other": instance(),
    "first": instance(),
    "second": instance(),
    "third": instance(),
    "pinger": instance(),
    "ponger": instance(),
    "fragile": instance(notify_on_complete=True),
    "fragile_loop": instance(notify_on_complete=True),
    "echoer": instance(notify_on_complete=True),
    "retrier": instance(retry={"max_attempts": 3, "backoff_base": "100ms"}),
}
GO = {"path": "payload.go", "op": "eq", "value": True}
SYNC_FAN_OUT = ("synchronous pipeline trigger requires exactly one entry dispatch; "
                "use ?async=true for fan-out entry pipelines")


def ok(result: str = "fine", **extra: Any) -> dict[str, Any]:
    return {"mode": "ok", "result": result, **extra}


def emits(*events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"mode": "emit", "events": list(events), **extra}


def event(type_: str, **payload: Any) -> dict[str, Any]:
    return {"type": type_, "payload": payload}


def pipelines(rec: Path) -> list[dict[str, Any]]:
    greet = [
        {"id": "intake", "uses": "first", "baggage": {"who": "payload.who"}, "with": ok("hello {payload.who}")},
        {"id": "reply", "uses": "second", "with": ok("{payload.result}!")},
    ]
    return [
        {"name": "chain", "on": "chain.start", "steps": [
            {"id": "a", "uses": "first", "baggage": {"order.id": "payload.order.id"},
             "with": emits(event("chain.a_done", count="{payload.qty}", note="qty {payload.qty}"),
                           record=f"{rec}/chain-a.json")},
            {"id": "b", "uses": "second", "baggage": {"stage.count": "payload.count"},
             "with": ok("b saw {payload.count}", record=f"{rec}/chain-b.json")},
            {"id": "c", "uses": "third", "with": ok("{payload.result}", record=f"{rec}/chain-c.json")},
        ]},
        {"name": "fanout", "on": "fan.start", "steps": [
            {"id": "burst", "uses": "first", "with": emits(event("fan.item", i=1), event("fan.item", i=2))},
            {"id": "each", "uses": "second", "with": ok("item {payload.i}")},
        ]},
        {"name": "splitter", "on": "split.start", "steps": [
            {"id": "claim", "uses": "first", "baggage": {"ticket": "payload.ticket"}, "with": ok("claimed")},
            {"split": [{"id": "left", "uses": "second", "with": ok("left")},
                       {"id": "right", "uses": "third", "with": ok("right")}]},
            {"id": "after", "uses": "first",
             "with": ok("after {payload.result}", record=f"{rec}/after-{{payload.result}}.json")},
        ]},
        {"name": "gated", "on": "gate.start", "steps": [
            {"id": "pre", "uses": "first", "with": emits(event("gate.checked", go="{payload.go}"))},
            {"id": "maybe", "uses": "second", "if": GO, "with": ok("ran")},
            {"id": "post", "uses": "third", "with": ok("post")},
        ]},
        {"name": "failing", "on": "fail.start", "steps": [
            {"id": "boom", "uses": "first", "with": {"mode": "error_noretry"}},
            {"id": "never", "uses": "second", "with": ok()},
        ]},
        {"name": "exact", "on": "Exact.Match", "from_plugin": "behave", "steps": [
            {"id": "hit", "uses": "first", "with": ok("hit")},
        ]},
        {"name": "filtered", "on": "filter.event", "if": {"all": [
            {"path": "payload.keep", "op": "eq", "value": True}, {"path": "payload.n", "op": "gt", "value": 1}]},
         "steps": [{"id": "kept", "uses": "first", "with": ok("kept")}]},
        {"name": "twin-a", "on": "twin.event", "steps": [{"id": "ta", "uses": "first", "with": ok()}]},
        {"name": "twin-b", "on": "twin.event", "steps": [{"id": "tb", "uses": "second", "with": ok()}]},
        {"name": "ping", "on": "loop.ping", "steps": [{"id": "ping", "uses": "pinger", "with": emits(event("loop.pong"))}]},
        {"name": "pong", "on": "loop.pong", "steps": [{"id": "pong", "uses": "ponger", "with": emits(event("loop.ping"))}]},
        {"name": "shallow", "on": "shallow.start", "max_depth": 1, "steps": [
            {"id": "s1", "uses": "first", "with": ok()},
            {"id": "s2", "uses": "second", "with": ok()},
            {"id": "s3", "uses": "third", "with": ok()},
        ]},
        {"name": "on-failure", "on-hook": "job.failed", "from_plugin": "fragile", "steps": [
            {"id": "report", "uses": "second", "with": ok("reported", record=f"{rec}/hook.json")},
        ]},
        {"name": "loop-hook", "on-hook": "job.failed", "from_plugin": "fragile_loop", "steps": [
            {"id": "kick", "uses": "pinger", "with": emits(event("loop.pong"))},
        ]},
        {"name": "echo-chain", "on-hook": "job.completed", "from_plugin": "echoer", "steps": [
            {"id": "echo", "uses": "echoer", "with": ok("echo")},
        ]},
        {"name": "with-missing", "on": "with.missing", "steps": [
            {"id": "needy", "uses": "retrier", "with": ok(msg="{payload.nope}")},
        ]},
        {"name": "immut", "on": "immut.start", "steps": [
            {"id": "x", "uses": "first", "baggage": {"k": "payload.a"},
             "with": emits(event("immut.next", a="{payload.a}", b="{payload.b}"))},
            {"id": "y", "uses": "second", "baggage": {"k": "payload.b"}, "with": ok("y ran")},
        ]},
        {"name": "api-flow", "on": "api.flow", "steps": greet},
        {"name": "sync-flow", "on": "sync.flow", "execution_mode": "synchronous", "timeout": "10s", "steps": greet},
        {"name": "sync-fail", "on": "sync.fail", "execution_mode": "synchronous", "timeout": "10s", "steps": [
            {"id": "fine", "uses": "first", "with": ok()},
            {"id": "bad", "uses": "second", "with": {"mode": "error_noretry"}},
        ]},
        {"name": "sync-slow", "on": "sync.slow", "execution_mode": "synchronous", "timeout": "1s", "steps": [
            {"id": "nap", "uses": "first", "with": {"mode": "sleep", "seconds": 2}},
        ]},
        {"name": "sync-split", "on": "sync.split", "execution_mode": "synchronous", "steps": [
            {"split": [{"id": "l", "uses": "first", "with": ok()}, {"id": "r", "uses": "second", "with": ok()}]},
        ]},
    ]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("pipelines")
    (root / "rec").mkdir()
    d = Daemon(root / "gw", PLUGINS, service={"max_workers": 8, "shutdown_grace": "2s"}, tokens=[
        {"token": TOKEN, "scopes": ["*"]},
        {"token": READER_TOKEN, "scopes": ["jobs:ro", "plugin:ro"]},
    ])
    d.config["api"]["max_concurrent_sync"] = 1
    d.config["pipelines"] = pipelines(root / "rec")
    d.write_config()
    d.start()
    yield d
    d.close()


@pytest.fixture(scope="module")
def stream(gw: Daemon) -> Iterator[SseReader]:
    reader = SseReader(f"{gw.url}/events", {"Authorization": f"Bearer {TOKEN}"})
    wait_until(lambda: reader.status == 200, what="SSE stream open")
    yield reader
    reader.close()


# --- helpers ------------------------------------------------------------------------------------

def rec_dir(gw: Daemon) -> Path:
    return gw.root.parent / "rec"


def recorded(gw: Daemon, name: str) -> dict[str, Any]:
    return json.loads((rec_dir(gw) / name).read_text())["request"]


def emit_root(gw: Daemon, *events: dict[str, Any], plugin: str = "behave", **extra: Any) -> str:
    """A root job (API-submitted ``poll``) that emits ``events``."""
    return gw.trigger(plugin, "poll", emits(*events, **extra))


def settled_tree(gw: Daemon, root: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The job tree of ``root`` once every job in it is terminal, i.e. once it is complete."""
    def done() -> list[dict[str, Any]] | None:
        resp = gw.client.get(f"/job/{root}/tree")
        assert resp.status_code == 200, resp.text
        nodes = resp.json()
        return nodes if all(n["status"] in TERMINAL for n in nodes) else None

    return wait_until(done, timeout, what=f"the tree of {root} to settle")


def steps_of(tree: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for node in tree[1:]:
        out.setdefault(node["step_id"], []).append(node)
    return out


def only(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(nodes) == 1, nodes
    return nodes[0]


def queue_row(gw: Daemon, job_id: str) -> dict[str, Any]:
    with gw.db() as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM job_queue WHERE job_id=?", (job_id,)).fetchone()
    assert row is not None, job_id
    out = dict(row)
    out["payload"] = json.loads(out["payload"])
    return out


def context_of(gw: Daemon, job_id: str) -> dict[str, Any]:
    with gw.db() as db:
        row = db.execute("SELECT c.context FROM job_queue q JOIN event_contexts c ON c.id = q.event_context_id"
                         " WHERE q.job_id=?", (job_id,)).fetchone()
    assert row is not None, f"job {job_id} has no context record"
    return json.loads(row[0])


def depth_exceeded(gw: Daemon) -> list[Any]:
    with gw.db() as db:
        return [rec.event for rec in read_stream(db, "router") if type(rec.event).__name__ == "RouteDepthExceeded"]


def inspect(gw: Daemon, job_id: str) -> dict[str, Any]:
    proc = gw.cli("job", "inspect", job_id, "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def post(gw: Daemon, path: str, payload: dict[str, Any] | None = None, token: str = TOKEN) -> httpx.Response:
    body = {} if payload is None else {"payload": payload}
    return httpx.post(gw.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=20)


def warns_about(gw: Daemon, job_id: str) -> list[dict[str, Any]]:
    """WARN lines naming ``job_id``, read once the gateway has logged the job's completion (routing and
    hooks run in the completion's transaction, which commits before that line)."""
    wait_until(lambda: any(line.get("msg") == "job completed" and line.get("job_id") == job_id
                           for line in gw.log_lines()), 10, what=f"completion of {job_id} in the log")
    return [line for line in gw.log_lines() if line.get("level") == "WARN" and job_id in json.dumps(line)]


def pipeline_job_count(gw: Daemon, name: str, status: str | None = None) -> int:
    with gw.db() as db:
        return db.execute("SELECT COUNT(*) FROM job_queue WHERE pipeline=? AND status=coalesce(?, status)",
                          (name, status)).fetchone()[0]


# --- routing ------------------------------------------------------------------------------------

def test_three_step_sequence_runs_in_order_with_templates_and_baggage_in_context_and_payload(
    gw: Daemon, stream: SseReader,
) -> None:
    root = emit_root(gw, event("chain.start", order={"id": "A-17"}, qty=3), record=str(rec_dir(gw) / "chain-root.json"))
    tree = settled_tree(gw, root)
    assert [(n["plugin"], n.get("step_id")) for n in tree] == [("behave", None), ("first", "a"), ("second", "b"),
                                                               ("third", "c")]
    assert all(n["status"] == "succeeded" for n in tree)
    assert [n["parent_job_id"] for n in tree[1:]] == [n["job_id"] for n in tree[:-1]]
    for earlier, later in itertools.pairwise(tree):
        assert earlier["completed_at"] <= later["started_at"], "each step starts after the previous one ended"
    a, b, c = (gw.job(n["job_id"]) for n in tree[1:])
    assert {a["submitted_by"], b["submitted_by"], c["submitted_by"]} == {"route"}
    assert c["result"]["result"] == "b saw 3", "the last step got step b's result through ductile.step.succeeded"

    # A root job's context carries only its plugin name.
    assert recorded(gw, "chain-root.json")["context"] == {"ductile_plugin": "behave"}
    ra, rb, rc = (recorded(gw, f"chain-{s}.json") for s in "abc")
    instance_id = ra["context"]["ductile_pipeline_instance_id"]
    for req, step, depth, plugin in ((ra, "a", 0, "first"), (rb, "b", 1, "second"), (rc, "c", 2, "third")):
        ctx = req["context"]
        assert {k: ctx[k] for k in ctx if k.startswith("ductile")} == {
            "ductile_plugin": plugin, "ductile_pipeline": "chain", "ductile_step_id": step,
            "ductile_pipeline_instance_id": instance_id, "ductile_route_depth": depth, "ductile_route_max_depth": 3,
            "ductile": {"pipeline_instance_id": instance_id, "route_depth": depth, "route_max_depth": 3},
        }
        assert ctx["order"] == {"id": "A-17"}
        assert req["event"]["payload"]["order"] == {"id": "A-17"}
        assert req["event"]["payload"]["ductile_pipeline"] == "chain", "context keys are merged into event.payload"
    assert ra["event"]["type"] == "chain.start"
    assert ra["event"]["payload"]["ductile_upstream_plugin"] == "behave"

    # Step b: a's event, with the single-reference template keeping the number's type.
    assert rb["event"]["type"] == "chain.a_done"
    assert rb["event"]["payload"]["count"] == 3 and rb["event"]["payload"]["note"] == "qty 3"
    assert rb["event"]["payload"]["mode"] == "ok" and rb["event"]["payload"]["result"] == "b saw 3"
    assert {k: rb["event"]["payload"][k] for k in ("ductile_upstream_plugin", "ductile_upstream_pipeline",
                                                   "ductile_upstream_step_id")} == {
        "ductile_upstream_plugin": "first", "ductile_upstream_pipeline": "chain", "ductile_upstream_step_id": "a"}
    assert rb["payload"]["type"] == "chain.a_done" and "mode" not in rb["payload"]["payload"], \
        "the raw request payload is never remapped by with:"
    assert rb["context"]["stage"] == {"count": 3}, "a step's claims apply when its job is created"
    assert "stage" not in ra["context"]

    # Step c: b emitted nothing, so c received ductile.step.succeeded {result}; both claims reached it.
    assert rc["event"]["type"] == "ductile.step.succeeded"
    assert rc["event"]["payload"]["result"] == "b saw 3"
    assert rc["event"]["event_id"] and rc["event"]["timestamp"]
    assert rc["context"]["stage"] == {"count": 3} and rc["event"]["payload"]["stage"] == {"count": 3}

    enqueued = stream.wait_for(lambda fs: {n["job_id"] for n in tree[1:]} <= {
        f["data"]["job_id"] for f in fs if f.get("event") == "router.enqueued"})
    frames = {f["data"]["job_id"]: f["data"] for f in enqueued if f.get("event") == "router.enqueued"}
    for node in tree[1:]:
        frame = frames[node["job_id"]]
        assert (frame["pipeline"], frame["step_id"], frame["parent_job_id"]) == ("chain", node["step_id"],
                                                                                  node["parent_job_id"])

    report = inspect(gw, tree[3]["job_id"])
    assert [n["job_id"] for n in report["lineage"]] == [n["job_id"] for n in tree], "lineage, root first"
    assert [r["step_id"] for r in report["context"]["chain"]] == ["a", "b", "c"]
    assert report["context"]["chain"][0]["claims"] == {"order": {"id": "A-17"}}
    assert report["context"]["baggage"] == {"order": {"id": "A-17"}, "stage": {"count": 3}}
    root_report = inspect(gw, root)
    assert root_report["dispatches"] == [{"event_type": "chain.start", "pipeline": "chain", "step_id": "a",
                                          "outcome": "enqueued", "job_id": tree[1]["job_id"]}]


def test_step_succeeded_carries_the_upstream_injections(gw: Daemon) -> None:
    root = emit_root(gw, event("chain.start", order={"id": "B-2"}, qty=1))
    tree = settled_tree(gw, root)
    payload = recorded(gw, "chain-c.json")["event"]["payload"]
    assert payload["result"] == "b saw 1"
    assert (payload.get("ductile_upstream_plugin"), payload.get("ductile_upstream_pipeline"),
            payload.get("ductile_upstream_step_id")) == ("second", "chain", "b")
    # The synthetic event is stored with a real RFC 3339 UTC timestamp (when it was made), not "".
    stored = queue_row(gw, only(steps_of(tree)["c"])["job_id"])["payload"]
    assert stored["type"] == "ductile.step.succeeded"
    made = datetime.fromisoformat(stored["timestamp"])
    assert stored["timestamp"].endswith("Z") and abs(time.time() - made.timestamp()) < 120, stored["timestamp"]


def test_a_step_that_emits_two_events_starts_two_jobs_of_the_next_step(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("fan.start")))
    steps = steps_of(tree)
    burst = only(steps["burst"])
    assert len(steps["each"]) == 2
    assert {n["parent_job_id"] for n in steps["each"]} == {burst["job_id"]}
    assert sorted(n["result"]["result"] for n in steps["each"]) == ["item 1", "item 2"]
    assert len(tree) == 4


def test_split_runs_both_branches_and_the_next_step_once_per_branch_with_the_same_baggage(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("split.start", ticket="T-1")))
    steps = steps_of(tree)
    claim, left, right = only(steps["claim"]), only(steps["left"]), only(steps["right"])
    assert left["parent_job_id"] == right["parent_job_id"] == claim["job_id"]
    after = {n["result"]["result"]: n for n in steps["after"]}
    assert set(after) == {"after left", "after right"}
    assert after["after left"]["parent_job_id"] == left["job_id"]
    assert after["after right"]["parent_job_id"] == right["job_id"]
    assert all(n["status"] == "succeeded" for n in tree) and len(tree) == 6
    reqs = [recorded(gw, f"after-{side}.json") for side in ("left", "right")]
    for req in reqs:
        assert req["context"]["ticket"] == "T-1" and req["event"]["payload"]["ticket"] == "T-1"
        assert req["context"]["ductile_route_depth"] == 2
    assert reqs[0]["context"]["ductile_pipeline_instance_id"] == reqs[1]["context"]["ductile_pipeline_instance_id"]
    assert context_of(gw, left["job_id"])["ticket"] == context_of(gw, right["job_id"])["ticket"] == "T-1"


def test_a_false_step_condition_records_the_step_skipped_and_its_successor_still_runs(
    gw: Daemon, stream: SseReader,
) -> None:
    tree = settled_tree(gw, emit_root(gw, event("gate.start", go=False)))
    steps = steps_of(tree)
    pre, switch = only(steps["pre"]), only(steps["maybe__switch"])
    maybe, post_ = only(steps["maybe"]), only(steps["post"])
    assert (switch["plugin"], switch["status"]) == ("core.switch", "succeeded")
    assert switch["result"] == {"matched": False, "event": "ductile.switch.false"}
    assert maybe["status"] == "skipped" and "started_at" not in maybe
    with gw.db() as db:
        assert db.execute("SELECT from_status, to_status, reason FROM job_transitions WHERE job_id=? ORDER BY id",
                          (maybe["job_id"],)).fetchall() == [(None, "queued", None), ("queued", "skipped", "condition false")]
        assert db.execute("SELECT COUNT(*) FROM job_attempts WHERE job_id=?", (maybe["job_id"],)).fetchone()[0] == 0
    assert post_["status"] == "succeeded" and post_["parent_job_id"] == maybe["job_id"]
    assert queue_row(gw, post_["job_id"])["payload"]["type"] == "ductile.step.skipped"
    skipped = gw.client.get("/jobs", params={"status": "skipped", "limit": 200}).json()["jobs"]
    assert maybe["job_id"] in {j["job_id"] for j in skipped}
    frames = stream.wait_for(lambda fs: any(f.get("event") == "job.skipped" and f["data"]["job_id"] == maybe["job_id"]
                                            for f in fs))
    frame = next(f["data"] for f in frames if f.get("event") == "job.skipped" and f["data"]["job_id"] == maybe["job_id"])
    assert frame["reason"] == "condition false"
    frames = stream.wait_for(lambda fs: any(f.get("event") == "job.completed" and f["data"]["job_id"] == post_["job_id"]
                                            for f in fs))
    spawned = {f["data"]["job_id"] for f in frames if f.get("event") == "plugin.spawned"}
    assert pre["job_id"] in spawned and post_["job_id"] in spawned
    assert not {switch["job_id"], maybe["job_id"]} & spawned, "the switch runs in-process; the skipped step never runs"

    # The same pipeline with the condition true runs the gated step from ductile.switch.true.
    steps = steps_of(settled_tree(gw, emit_root(gw, event("gate.start", go=True))))
    assert only(steps["maybe__switch"])["result"] == {"matched": True, "event": "ductile.switch.true"}
    maybe = only(steps["maybe"])
    assert (maybe["status"], maybe["result"]["result"]) == ("succeeded", "ran")
    assert queue_row(gw, maybe["job_id"])["payload"]["type"] == "ductile.switch.true"
    assert queue_row(gw, only(steps["post"])["job_id"])["payload"]["type"] == "ductile.step.succeeded"


def test_a_failed_step_routes_nothing(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("fail.start")))
    assert [(n.get("step_id"), n["status"]) for n in tree] == [(None, "succeeded"), ("boom", "failed")]
    assert tree[1]["last_error"] == "permanent problem"


def test_on_matches_the_exact_case_sensitive_type_and_from_plugin_filters_the_source(gw: Daemon) -> None:
    near_misses = [event(t) for t in ("exact.match", "EXACT.MATCH", "Exact.Match.more", "Exact", "Exact.*")]
    tree = settled_tree(gw, emit_root(gw, *near_misses, event("Exact.Match", n=1)))
    assert [n.get("step_id") for n in tree] == [None, "hit"], "only the exact type started the pipeline"
    hit = queue_row(gw, tree[1]["job_id"])
    assert hit["payload"]["type"] == "Exact.Match" and hit["submitted_by"] == "route"
    assert len(settled_tree(gw, emit_root(gw, *near_misses))) == 1, "near misses alone start nothing"
    other = settled_tree(gw, emit_root(gw, event("Exact.Match"), plugin="other"))
    assert len(other) == 1, "from_plugin: behave refuses the same type emitted by another plugin"


def test_a_trigger_condition_filters_events_and_an_evaluation_error_is_a_failed_child(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("filter.event", keep=False, n="x"), event("filter.event", keep=True, n=2),
                                      event("filter.event", keep=True, n="x")))
    kept = steps_of(tree)["kept"]
    assert [n["status"] for n in kept] == ["succeeded", "failed"], "keep:false (short-circuited) starts nothing"
    failed = kept[1]
    assert "started_at" not in failed, "a dispatch error is never claimed or spawned"
    assert failed["last_error"].startswith('pipeline "filtered" step "kept"'), failed["last_error"]
    assert "op gt needs a number at payload.n, got string" in failed["last_error"]
    assert tree[0]["status"] == "succeeded", "the emitting job is unaffected"


def test_one_event_matching_two_pipelines_starts_two_instances(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("twin.event", x=1)))
    children = {n["pipeline"]: n for n in tree[1:]}
    assert set(children) == {"twin-a", "twin-b"} and len(tree) == 3
    rows = [queue_row(gw, n["job_id"]) for n in children.values()]
    assert rows[0]["source_event_id"] == rows[1]["source_event_id"] is not None
    instances = {context_of(gw, n["job_id"])["ductile"]["pipeline_instance_id"] for n in children.values()}
    assert len(instances) == 2, "each matching pipeline gets its own instance"


def test_a_loop_between_two_pipelines_stops_at_the_hop_cap(gw: Daemon, stream: SseReader) -> None:
    root = emit_root(gw, event("loop.ping"))
    tree = settled_tree(gw, root, timeout=60)
    loop = tree[1:]
    assert len(loop) == 63, "hops 1..63 are dispatched; the one that would reach hop 64 is refused"
    assert [n["pipeline"] for n in loop[:4]] == ["ping", "pong", "ping", "pong"]
    assert all(n["status"] == "succeeded" for n in tree), "the emitting job still succeeds"
    last = loop[-1]["job_id"]
    refused = [e for e in depth_exceeded(gw) if e.job_id == last]
    assert [(e.reason, e.pipeline) for e in refused] == [("hop_cap", "ping" if loop[-1]["pipeline"] == "pong" else "pong")]
    frames = stream.wait_for(lambda fs: any(f.get("event") == "router.depth_exceeded" and f["data"]["job_id"] == last
                                            for f in fs))
    frame = next(f["data"] for f in frames if f.get("event") == "router.depth_exceeded" and f["data"]["job_id"] == last)
    assert frame["reason"] == "hop_cap"


def test_max_depth_stops_a_transition_inside_one_pipeline(gw: Daemon, stream: SseReader) -> None:
    tree = settled_tree(gw, emit_root(gw, event("shallow.start")))
    assert [(n.get("step_id"), n["status"]) for n in tree] == [(None, "succeeded"), ("s1", "succeeded"),
                                                               ("s2", "succeeded")]
    s2 = tree[2]["job_id"]
    [refused] = [e for e in depth_exceeded(gw) if e.job_id == s2]
    assert (refused.pipeline, refused.step_id, refused.route_depth, refused.route_max_depth) == ("shallow", "s2", 1, 1)
    frames = stream.wait_for(lambda fs: any(f.get("event") == "router.depth_exceeded" and f["data"]["job_id"] == s2
                                            for f in fs))
    frame = next(f["data"] for f in frames if f.get("event") == "router.depth_exceeded" and f["data"]["job_id"] == s2)
    assert {k: frame[k] for k in ("job_id", "pipeline", "step_id", "route_depth", "route_max_depth")} == {
        "job_id": s2, "pipeline": "shallow", "step_id": "s2", "route_depth": 1, "route_max_depth": 1}
    assert inspect(gw, s2)["dispatches"] == [{"pipeline": "shallow", "step_id": "s2", "outcome": "depth_exceeded"}]


def test_a_transition_refused_by_the_depth_guard_is_logged_at_warn(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("shallow.start")))
    assert len(tree) == 3
    assert warns_about(gw, tree[2]["job_id"]), "§3.6: a refused transition logs a WARN"


def test_a_failed_notifying_root_job_starts_the_job_failed_hook_pipeline(gw: Daemon) -> None:
    failed = gw.trigger("fragile", "poll", {"mode": "error_noretry"})
    tree = settled_tree(gw, failed)
    assert [(n["plugin"], n.get("pipeline"), n["status"]) for n in tree] == [
        ("fragile", None, "failed"), ("second", "on-failure", "succeeded")]
    hook = gw.job(tree[1]["job_id"])
    assert (hook["submitted_by"], hook["parent_job_id"], hook["step_id"]) == ("hook", failed, "report")
    req = recorded(gw, "hook.json")
    assert req["event"]["type"] == "job.failed"
    payload = req["event"]["payload"]
    text = "Job failed [fragile]: permanent problem"
    assert {k: payload[k] for k in ("job_id", "plugin", "command", "status", "error", "reason", "attempt",
                                    "submitted_by", "message", "text")} == {
        "job_id": failed, "plugin": "fragile", "command": "poll", "status": "failed", "error": "permanent problem",
        "reason": "plugin_retry_false", "attempt": 1, "submitted_by": "api", "message": text, "text": text}
    assert isinstance(payload["duration_ms"], int) and payload["duration_ms"] >= 0
    assert not [k for k in req["context"] if not k.startswith("ductile")], "a hook job starts with no baggage"


def test_hook_chains_stop_at_hook_max_depth(gw: Daemon) -> None:
    root = gw.trigger("echoer", "poll", ok("root"))
    tree = settled_tree(gw, root)
    assert [(n.get("pipeline"), n["status"]) for n in tree] == [(None, "succeeded")] + [("echo-chain", "succeeded")] * 4
    assert [n["parent_job_id"] for n in tree[1:]] == [n["job_id"] for n in tree[:-1]], "each hook fired the next"
    assert {gw.job(n["job_id"])["submitted_by"] for n in tree[1:]} == {"hook"}


def test_a_hook_refused_by_hook_max_depth_is_logged_at_warn(gw: Daemon) -> None:
    tree = settled_tree(gw, gw.trigger("echoer", "poll", ok("root")))
    assert len(tree) == 5
    assert warns_about(gw, tree[-1]["job_id"]), "§8: the refused signal logs a WARN"


def test_a_hook_job_starts_the_lineage_hop_count_at_zero(gw: Daemon) -> None:
    failed = gw.trigger("fragile_loop", "poll", {"mode": "error_noretry"})
    tree = settled_tree(gw, failed, timeout=60)
    kick = tree[1]
    assert (kick["pipeline"], kick["step_id"]) == ("loop-hook", "kick")
    assert len(tree[2:]) == 63, "the hook job is hop 0, so hops 1..63 of the loop follow it"


def test_a_plugin_emitting_a_reserved_or_empty_type_fails_with_a_routing_error(gw: Daemon) -> None:
    reserved = settled_tree(gw, emit_root(gw, event("ductile.step.succeeded", result="forged")))
    assert len(reserved) == 1, "a forged synthetic event routes nothing"
    assert reserved[0]["status"] == "failed" and gw.job(reserved[0]["job_id"])["attempt"] == 1
    assert reserved[0]["last_error"].startswith("failed to route events: "), reserved[0]["last_error"]
    assert '"ductile.step.succeeded"' in reserved[0]["last_error"]
    empty = settled_tree(gw, emit_root(gw, event("")))
    assert len(empty) == 1 and empty[0]["status"] == "failed"
    assert empty[0]["last_error"].startswith("failed to route events: "), empty[0]["last_error"]


def test_a_reserved_event_type_fails_with_the_documented_message(gw: Daemon) -> None:
    [job] = settled_tree(gw, emit_root(gw, event("ductile.x")))
    assert (job["status"], job["last_error"]) == ("failed", 'failed to route events: reserved event type "ductile.x"')


def test_a_with_template_on_a_missing_path_fails_the_step_at_preflight_without_spawning(
    gw: Daemon, stream: SseReader,
) -> None:
    tree = settled_tree(gw, emit_root(gw, event("with.missing", present=1)))
    needy = only(steps_of(tree)["needy"])
    assert (needy["status"], needy["attempt"], needy["last_error"]) == (
        "failed", 1, 'with.msg: path "payload.nope" not found'), "no retry although retrier allows 3 attempts"
    frames = stream.wait_for(lambda fs: any(f.get("event") == "job.failed" and f["data"]["job_id"] == needy["job_id"]
                                            for f in fs))
    assert not [f for f in frames if f.get("event") == "plugin.spawned" and f["data"]["job_id"] == needy["job_id"]]
    assert gw.job(needy["job_id"])["max_attempts"] == 3, "a routed child takes max_attempts from its plugin"


def test_changing_an_inherited_baggage_value_fails_the_child_at_dispatch(gw: Daemon) -> None:
    tree = settled_tree(gw, emit_root(gw, event("immut.start", a=1, b=2)))
    steps = steps_of(tree)
    assert only(steps["x"])["status"] == "succeeded"
    y = only(steps["y"])
    assert y["status"] == "failed" and "started_at" not in y
    assert y["last_error"].startswith('pipeline "immut" step "y"'), y["last_error"]
    assert y["last_error"].endswith('baggage: path "k" is immutable (inherited value differs)'), y["last_error"]
    with gw.db() as db:
        assert db.execute("SELECT COUNT(*) FROM job_attempts WHERE job_id=?", (y["job_id"],)).fetchone()[0] == 0
    same = steps_of(settled_tree(gw, emit_root(gw, event("immut.start", a=5, b=5))))
    assert only(same["y"])["status"] == "succeeded", "repeating an inherited path with the same value is allowed"


# --- POST /pipeline/{name} ----------------------------------------------------------------------

def test_post_pipeline_async_enqueues_the_entry_and_replies_202(gw: Daemon, stream: SseReader) -> None:
    resp = post(gw, "/pipeline/api-flow", {"who": "ada"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body == {"job_id": body["job_id"], "job_ids": [body["job_id"]], "status": "queued", "plugin": "pipeline",
                    "command": "api-flow"}
    entry = gw.job(body["job_id"])
    assert (entry["plugin"], entry["pipeline"], entry["step_id"], entry["submitted_by"]) == ("first", "api-flow",
                                                                                             "intake", "api")
    tree = settled_tree(gw, body["job_id"])
    assert [(n["step_id"], n["status"], n["result"]["result"]) for n in tree] == [
        ("intake", "succeeded", "hello ada"), ("reply", "succeeded", "hello ada!")]
    assert context_of(gw, tree[1]["job_id"])["who"] == "ada"
    frames = stream.wait_for(lambda fs: any(f.get("event") == "pipeline.enqueued" and f["data"]["job_id"] == body["job_id"]
                                            for f in fs))
    frame = next(f["data"] for f in frames if f.get("event") == "pipeline.enqueued"
                 and f["data"]["job_id"] == body["job_id"])
    assert frame["pipeline"] == "api-flow"

    # An explicit trigger is operator intent: from_plugin (behave) is not evaluated.
    exact = post(gw, "/pipeline/exact", {})
    assert exact.status_code == 202, exact.text
    assert gw.wait_job(exact.json()["job_id"])["status"] == "succeeded"
    unfiltered = post(gw, "/pipeline/filtered", {"keep": False})
    assert unfiltered.status_code == 202, "the pipeline's trigger if: is not evaluated either"
    assert gw.wait_job(unfiltered.json()["job_id"])["status"] == "succeeded"

    forced = post(gw, "/pipeline/sync-flow?async=true", {"who": "eve"})
    assert forced.status_code == 202, forced.text
    assert forced.json()["status"] == "queued" and forced.json()["command"] == "sync-flow"
    settled_tree(gw, forced.json()["job_id"])


def test_post_pipeline_refusals_write_nothing(gw: Daemon) -> None:
    before = {name: pipeline_job_count(gw, name) for name in ("api-flow", "sync-split")}
    unknown = post(gw, "/pipeline/no-such-pipeline", {})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "pipeline not found"})
    missing = post(gw, "/pipeline/api-flow", {"someone": "else"})
    assert (missing.status_code, missing.json()) == (400, {"error": 'baggage: source path "payload.who" not found'})
    fan_out = post(gw, "/pipeline/sync-split", {})
    assert (fan_out.status_code, fan_out.json()) == (400, {"error": SYNC_FAN_OUT})
    huge = post(gw, "/pipeline/api-flow", {"who": "x" * (1024 * 1024 + 10)})
    assert huge.status_code == 413, huge.text
    assert huge.json()["error"] == "pipeline baggage exceeds maximum context size"
    assert huge.json()["bytes_limit"] == 1048576 and huge.json()["bytes_actual"] > 1048576
    denied = post(gw, "/pipeline/api-flow", {"who": "mallory"}, token=READER_TOKEN)
    assert (denied.status_code, denied.json()) == (403, {"error": "insufficient scope"})
    assert {name: pipeline_job_count(gw, name) for name in before} == before

    split = post(gw, "/pipeline/sync-split?async=true", {})
    assert split.status_code == 202, split.text
    ids = split.json()["job_ids"]
    assert len(ids) == 2 and split.json()["job_id"] == ids[0]
    assert {gw.wait_job(i)["step_id"] for i in ids} == {"l", "r"}


def test_synchronous_pipeline_replies_200_with_the_terminal_result_and_tree(gw: Daemon) -> None:
    resp = post(gw, "/pipeline/sync-flow", {"who": "bob"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"job_id", "status", "duration_ms", "result", "tree"}
    assert (body["status"], body["result"]) == ("succeeded", "hello bob!")
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0
    assert [(n["job_id"] == body["job_id"], n["step_id"], n["status"]) for n in body["tree"]] == [
        (True, "intake", "succeeded"), (False, "reply", "succeeded")]

    failed = post(gw, "/pipeline/sync-fail", {})
    assert failed.status_code == 200, failed.text
    assert failed.json()["status"] == "failed"
    assert [n["status"] for n in failed.json()["tree"]] == ["succeeded", "failed"]


def test_a_synchronous_pipeline_whose_terminal_step_failed_replies_with_that_steps_result(gw: Daemon) -> None:
    """pipelines.md §9: `result` comes from the last-completed job on a terminal node, whatever its
    status, not from the step before it that succeeded (whose result was "fine")."""
    resp = post(gw, "/pipeline/sync-fail", {})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    [fine, bad] = body["tree"]
    assert (fine["step_id"], fine["result"]["result"]) == ("fine", "fine")
    assert (bad["step_id"], bad["status"]) == ("bad", "failed")
    assert body["result"] == bad["result"] == {"status": "error", "error": "permanent problem", "retry": False}


def test_synchronous_pipeline_past_its_timeout_replies_202_still_running(gw: Daemon) -> None:
    """Also: with ``api.max_concurrent_sync: 1`` a second synchronous call meanwhile gets 503."""
    replies: list[tuple[httpx.Response, float]] = []

    def slow_call() -> None:
        started = time.monotonic()
        replies.append((post(gw, "/pipeline/sync-slow", {}), time.monotonic() - started))

    before = pipeline_job_count(gw, "sync-slow")
    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_until(lambda: pipeline_job_count(gw, "sync-slow", "running") > before, 5, what="the slow pipeline's job")
    flows = pipeline_job_count(gw, "sync-flow")
    busy = post(gw, "/pipeline/sync-flow", {"who": "late"})
    assert (busy.status_code, busy.json()) == (503, {"error": "too many concurrent synchronous requests"})
    assert pipeline_job_count(gw, "sync-flow") == flows, "a refused call enqueues nothing"
    caller.join(10)
    [(resp, waited)] = replies
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body == {"job_id": body["job_id"], "status": "running", "timeout_exceeded": True,
                    "message": "Pipeline still running after timeout."}
    assert 0.9 <= waited < 3, waited
    assert gw.wait_job(body["job_id"])["status"] == "succeeded", "the client's timeout does not cancel the job"


# --- load-time validation -----------------------------------------------------------------------

def test_a_config_with_an_invalid_pipeline_refuses_to_boot(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True}}, start=False)
    gw.config["pipelines"] = [{"name": "broken", "on": "x.happened", "max_depth": -1,
                               "steps": [{"id": "s", "uses": "ghost"}]}]
    gw.write_config()
    proc = gw.cli("system", "start", "--config", str(gw.root), timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 'pipeline "broken": max_depth must be >= 0' in lines, proc.stderr
    assert 'pipeline "broken" step "s": uses "ghost" is not a configured plugin' in lines, proc.stderr
