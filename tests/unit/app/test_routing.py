"""The router's decision (issue 10 item 8): a finished job's events → child jobs of compiled pipelines.

A real ``EventLog`` in a temp dir and pipelines compiled from their YAML shape; each test calls the
router inside a writer transaction, as the dispatcher's completion does, and reads the children
back from the queue projection (pipelines.md §3–§8, jobs.md §4).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ductile.app import jobs as app_jobs
from ductile.app.routing import Router
from ductile.commands.jobs import EnqueueJob, JobState
from ductile.events.log import EventLog, WriteTx
from ductile.events.record import Recorded
from ductile.events.types import ContextCreated, JobDeduped, JobEnqueued, JobSkipped, RouteDepthExceeded
from ductile.pipelines.compiler import compile_pipelines
from ductile.pipelines.graph import STEP_SKIPPED, STEP_SUCCEEDED, SWITCH_PLUGIN
from ductile.projections.registry import default_runner

pytestmark = pytest.mark.anyio
PLUGINS = {"fetch", "notify", "archive", "publish"}
GO = {"path": "payload.go", "op": "eq", "value": True}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EventLog]:
    events = await EventLog(tmp_path / "state.db", "full", default_runner()).open()
    try:
        yield events
    finally:
        await events.aclose()


def router(*pipelines: dict[str, Any], notify: bool = False, hook_max_depth: int = 4, dedupe_ttl: int = 0) -> Router:
    compiled = compile_pipelines(list(pipelines), enabled=set(PLUGINS), configured=set(PLUGINS))
    assert compiled.errors == [] and compiled.doctor == [], (compiled.errors, compiled.doctor)
    return Router(pipelines=compiled.pipelines, max_attempts=lambda _plugin: 3, plugin_config=lambda _plugin: {},
                  notify_on_complete=lambda _plugin: notify, hook_max_depth=hook_max_depth, dedupe_ttl=dedupe_ttl)


def event(type_: str, payload: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "payload": payload or {}, "source": "fetch", "timestamp": "2026-01-01T00:00:00Z",
            "event_id": str(uuid.uuid4()), **extra}


async def root_job(log: EventLog, plugin: str = "fetch") -> str:
    cmd = EnqueueJob(job_id=str(uuid.uuid4()), plugin=plugin, command="poll", payload={}, submitted_by="test",
                     max_attempts=1)
    return (await log.submit(lambda tx: app_jobs.enqueue(tx, cmd))).job_id


def job(tx: WriteTx, job_id: str) -> JobState:
    state = app_jobs.load_job(tx.cur, job_id, tx)
    assert state is not None
    return state


async def succeeded(log: EventLog, r: Router, job_id: str, *emitted: dict[str, Any]) -> list[Recorded]:
    return await log.submit(lambda tx: r.after_success(tx, job(tx, job_id), list(emitted), "done"))


def children(log: EventLog, parent: str) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    """The parent's children by (pipeline, step id)."""
    conn = log.reader()
    try:
        rows = conn.execute("SELECT job_id, plugin, command, status, pipeline, step_id, submitted_by, dedupe_key"
                            " FROM job_queue WHERE parent_job_id=?", (parent,)).fetchall()
    finally:
        conn.close()
    out = {}
    for job_id, plugin, command, status, pipeline, step_id, submitted_by, dedupe_key in rows:
        out[(pipeline, step_id)] = {"job_id": job_id, "plugin": plugin, "command": command, "status": status,
                                    "submitted_by": submitted_by, "dedupe_key": dedupe_key}
    return out


def of(recs: list[Recorded], kind: type) -> list[Any]:
    return [r.event for r in recs if isinstance(r.event, kind)]


async def test_an_event_starts_every_matching_pipeline_and_a_split_fans_out(log: EventLog) -> None:
    r = router(
        {"name": "fan", "on": "repo.synced", "steps": [{"split": [{"id": "a", "uses": "notify"}, {"id": "b", "uses": "archive"}]}]},
        {"name": "single", "on": "repo.synced", "steps": [{"id": "c", "uses": "publish"}]},
        {"name": "other", "on": "repo.deleted", "steps": [{"id": "d", "uses": "publish"}]},
    )
    parent = await root_job(log)
    recs = await succeeded(log, r, parent, event("repo.synced", {"repo": "x"}))
    kids = children(log, parent)
    assert {k: (v["plugin"], v["command"], v["status"], v["submitted_by"]) for k, v in kids.items()} == {
        ("fan", "a"): ("notify", "handle", "queued", "route"),
        ("fan", "b"): ("archive", "handle", "queued", "route"),
        ("single", "c"): ("publish", "handle", "queued", "route"),
    }
    # Each child has its own context record, at depth 0 of its pipeline; the split's two share an instance.
    contexts = {(c.pipeline, c.step_id): c.context["ductile"] for c in of(recs, ContextCreated)}
    assert {k: v["route_depth"] for k, v in contexts.items()} == {("fan", "a"): 0, ("fan", "b"): 0, ("single", "c"): 0}
    assert contexts[("fan", "a")]["pipeline_instance_id"] == contexts[("fan", "b")]["pipeline_instance_id"]
    assert contexts[("fan", "a")]["pipeline_instance_id"] != contexts[("single", "c")]["pipeline_instance_id"]


async def test_a_step_that_emitted_nothing_routes_the_synthetic_step_succeeded_one_level_deeper(log: EventLog) -> None:
    r = router({"name": "chain", "on": "repo.synced", "steps": [{"id": "one", "uses": "notify"}, {"id": "two", "uses": "archive"}]})
    parent = await root_job(log)
    await succeeded(log, r, parent, event("repo.synced"))
    one = children(log, parent)[("chain", "one")]["job_id"]
    recs = await succeeded(log, r, one)
    [enqueued] = of(recs, JobEnqueued)
    assert (enqueued.step_id, enqueued.plugin, enqueued.payload["type"]) == ("two", "archive", STEP_SUCCEEDED)
    assert enqueued.payload["payload"]["result"] == "done"
    [context] = of(recs, ContextCreated)
    # Depth counts steps within the pipeline; hops count every dispatch from the root job (root → one → two).
    assert context.context["ductile"]["route_depth"] == 1 and context.hops == 2


async def test_an_if_step_is_gated_by_a_switch_that_queues_it_when_true(log: EventLog) -> None:
    r = router({"name": "gated", "on": "repo.synced",
                "steps": [{"id": "maybe", "uses": "notify", "if": GO}, {"id": "after", "uses": "archive"}]})
    parent = await root_job(log)
    await succeeded(log, r, parent, event("repo.synced", {"go": True}))
    [switch] = children(log, parent).values()
    assert switch["plugin"] == SWITCH_PLUGIN and switch["status"] == "queued"
    await log.submit(lambda tx: r.after_switch(tx, job(tx, switch["job_id"]), True))
    assert {k: (v["plugin"], v["status"]) for k, v in children(log, switch["job_id"]).items()} == {
        ("gated", "maybe"): ("notify", "queued")}


async def test_a_false_switch_creates_the_gated_step_skipped_and_routes_its_successors(log: EventLog) -> None:
    r = router({"name": "gated", "on": "repo.synced",
                "steps": [{"id": "maybe", "uses": "notify", "if": GO}, {"id": "after", "uses": "archive"}]})
    parent = await root_job(log)
    await succeeded(log, r, parent, event("repo.synced", {"go": False}))
    [switch] = children(log, parent).values()
    recs = await log.submit(lambda tx: r.after_switch(tx, job(tx, switch["job_id"]), False))
    [skipped_step] = children(log, switch["job_id"]).values()
    assert (skipped_step["plugin"], skipped_step["status"]) == ("notify", "skipped")
    assert [e.reason for e in of(recs, JobSkipped)] == ["condition false"]
    after = children(log, skipped_step["job_id"])
    assert {k: (v["plugin"], v["status"]) for k, v in after.items()} == {("gated", "after"): ("archive", "queued")}
    [enqueued_after] = [e for e in of(recs, JobEnqueued) if e.step_id == "after"]
    assert enqueued_after.payload["type"] == STEP_SKIPPED


async def test_an_event_with_the_dedupe_key_of_outstanding_work_is_deduped_not_dispatched(log: EventLog) -> None:
    r = router({"name": "p", "on": "repo.synced", "steps": [{"id": "s", "uses": "notify"}]})
    first_parent, second_parent = await root_job(log), await root_job(log)
    await succeeded(log, r, first_parent, event("repo.synced", dedupe_key="repo-x"))
    first = children(log, first_parent)[("p", "s")]
    assert first["dedupe_key"] == "repo-x"
    recs = await succeeded(log, r, second_parent, event("repo.synced", dedupe_key="repo-x"))
    assert children(log, second_parent) == {}
    [deduped] = of(recs, JobDeduped)
    assert (deduped.existing_job_id, deduped.dedupe_reason, deduped.parent_job_id, deduped.step_id) == (
        first["job_id"], "outstanding", second_parent, "s")


async def test_the_same_event_delivered_twice_dispatches_once(log: EventLog) -> None:
    r = router({"name": "p", "on": "repo.synced", "steps": [{"id": "s", "uses": "notify"}]})
    parent = await root_job(log)
    once = event("repo.synced")
    await succeeded(log, r, parent, once)
    again = await succeeded(log, r, parent, dict(once))
    assert of(again, JobEnqueued) == [] and of(again, JobDeduped) == []  # jobs.md §4.2: silently the same work
    assert list(children(log, parent)) == [("p", "s")]


async def test_a_transition_at_the_pipelines_max_depth_is_recorded_not_dispatched(log: EventLog) -> None:
    r = router({"name": "chain", "on": "repo.synced", "max_depth": 1,
                "steps": [{"id": "one", "uses": "notify"}, {"id": "two", "uses": "archive"}, {"id": "three", "uses": "publish"}]})
    parent = await root_job(log)
    await succeeded(log, r, parent, event("repo.synced"))
    one = children(log, parent)[("chain", "one")]["job_id"]
    await succeeded(log, r, one)
    two = children(log, one)[("chain", "two")]["job_id"]
    recs = await succeeded(log, r, two)
    assert children(log, two) == {} and of(recs, JobEnqueued) == []
    [exceeded] = of(recs, RouteDepthExceeded)
    assert (exceeded.job_id, exceeded.pipeline, exceeded.step_id) == (two, "chain", "two")
    assert (exceeded.route_depth, exceeded.route_max_depth, exceeded.reason) == (1, 1, None)


HOOK = {"name": "on-done", "on-hook": "job.completed", "steps": [{"id": "tell", "uses": "notify"}]}


async def test_a_notifying_plugins_terminal_job_fires_its_hook_pipeline(log: EventLog) -> None:
    r = router(HOOK, {"name": "on-fail", "on-hook": "job.failed", "steps": [{"id": "page", "uses": "publish"}]},
               notify=True)
    parent = await root_job(log)
    recs = await log.submit(lambda tx: r.after_terminal(tx, job(tx, parent), "succeeded", {"result": "ok!"}))
    [enqueued] = of(recs, JobEnqueued)
    assert (enqueued.pipeline, enqueued.step_id, enqueued.submitted_by) == ("on-done", "tell", "hook")
    assert enqueued.payload["type"] == "job.completed"
    assert enqueued.payload["payload"] == {"job_id": parent, "plugin": "fetch", "command": "poll",
                                           "status": "succeeded", "result": "ok!"}
    dead = await root_job(log)
    recs = await log.submit(lambda tx: r.after_terminal(tx, job(tx, dead), "dead", {"error": "gone"}))
    assert [(e.pipeline, e.payload["type"]) for e in of(recs, JobEnqueued)] == [("on-fail", "job.failed")]


async def test_hooks_do_not_fire_for_a_plugin_that_does_not_notify(log: EventLog) -> None:
    r = router(HOOK, notify=False)
    parent = await root_job(log)
    assert await log.submit(lambda tx: r.after_terminal(tx, job(tx, parent), "succeeded", {})) == []


async def test_steps_of_an_on_pipeline_never_fire_hooks(log: EventLog) -> None:
    r = router(HOOK, {"name": "p", "on": "repo.synced", "steps": [{"id": "s", "uses": "archive"}]}, notify=True)
    parent = await root_job(log)
    await succeeded(log, r, parent, event("repo.synced"))
    step = children(log, parent)[("p", "s")]["job_id"]
    assert await log.submit(lambda tx: r.after_terminal(tx, job(tx, step), "succeeded", {})) == []


async def test_a_hook_chain_stops_at_hook_max_depth(log: EventLog) -> None:
    r = router(HOOK, notify=True, hook_max_depth=1)
    parent = await root_job(log)
    recs = await log.submit(lambda tx: r.after_terminal(tx, job(tx, parent), "succeeded", {}))
    [hook_job] = of(recs, JobEnqueued)
    # The hook job's own completion would be depth 2: recorded, not dispatched.
    recs = await log.submit(lambda tx: r.after_terminal(tx, job(tx, hook_job.job_id), "succeeded", {}))
    assert of(recs, JobEnqueued) == []
    [exceeded] = of(recs, RouteDepthExceeded)
    assert (exceeded.job_id, exceeded.route_depth, exceeded.route_max_depth, exceeded.reason) == (
        hook_job.job_id, 2, 1, "hook_max_depth")
