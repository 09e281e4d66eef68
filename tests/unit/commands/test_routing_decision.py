"""The routing decision, table-driven (pipelines.md §3–§8, jobs.md §4): plain values in, appends out.

No log and no database: pipelines compiled from their YAML shape, a parent ``JobState``, what the
queue knew (``Known``), a counter for ids and a fixed ``now``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from ductile.commands import routing
from ductile.commands.errors import PayloadTooLarge, PipelineInputRefused
from ductile.commands.jobs import DedupeView, JobState
from ductile.commands.routing import Decision, Known, Lineage, Routes
from ductile.events.types import (
    ContextCreated,
    JobDeduped,
    JobDispatchFailed,
    JobEnqueued,
    JobSkipped,
    PipelineTriggered,
    RouteDepthExceeded,
)
from ductile.pipelines.compiler import compile_pipelines
from ductile.pipelines.graph import STEP_SKIPPED, STEP_SUCCEEDED, SWITCH_PLUGIN
from ductile.vocabulary import JobStatus

NOW = 1_700_000_000_000_000_000
SECOND = 1_000_000_000
PLUGINS = {"fetch", "notify", "archive", "publish"}
PARENT = "parent-job"

SINGLE = {"name": "p", "on": "repo.synced", "steps": [{"id": "s", "uses": "notify"}]}
CHAIN = {"name": "chain", "on": "repo.synced", "steps": [{"id": "one", "uses": "notify"}, {"id": "two", "uses": "archive"}]}
GATED = {"name": "gated", "on": "repo.synced", "steps": [
    {"id": "maybe", "uses": "notify", "if": {"path": "payload.go", "op": "eq", "value": True}},
    {"id": "after", "uses": "archive"}]}
CLAIMING = {"name": "claims", "on": "repo.synced",
            "steps": [{"id": "s", "uses": "notify", "baggage": {"repo": "payload.repo"}}]}
HOOK = {"name": "on-done", "on-hook": "job.completed", "steps": [{"id": "tell", "uses": "notify"}]}


def routes(*pipelines: dict[str, Any], dedupe_ttl: int = 0, notify: bool = False, hook_max_depth: int = 4) -> Routes:
    compiled = compile_pipelines(list(pipelines), enabled=set(PLUGINS), configured=set(PLUGINS))
    assert compiled.errors == [], compiled.errors
    return Routes(pipelines=compiled.pipelines, max_attempts=lambda _plugin: 3, notify_on_complete=lambda _p: notify,
                  hook_max_depth=hook_max_depth, dedupe_ttl=dedupe_ttl)


def ids() -> Iterator[str]:
    return (f"id-{n}" for n in itertools.count(1))


def parent(pipeline: str | None = None, step_id: str | None = None, payload: dict[str, Any] | None = None) -> JobState:
    return JobState(job_id=PARENT, plugin="fetch", command="poll", status=JobStatus.SUCCEEDED, attempt=1,
                    max_attempts=1, submitted_by="test", created_at=NOW - SECOND, payload=payload or {},
                    pipeline=pipeline, step_id=step_id)


def lineage_of(job: JobState, route_depth: int = 0, hops: int = 0) -> Lineage:
    context = {"ductile": {"pipeline_instance_id": "instance", "route_depth": route_depth}} if job.pipeline else {}
    return Lineage(parent=job, context=context, context_id="ctx-parent" if job.pipeline else None, hops=hops,
                   hook_depth=0)


def event(type_: str = "repo.synced", payload: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "payload": payload or {}, "source": "fetch", "timestamp": "2026-01-01T00:00:00Z",
            "event_id": "event-1", **extra}


def shape(decision: Decision) -> list[tuple[str, ...]]:
    """Each appended event as (type, its telling fields), in log order."""
    out: list[tuple[str, ...]] = []
    for a in decision.appends:
        for e in a.events:
            match e:
                case JobEnqueued():
                    out.append(("JobEnqueued", f"{e.pipeline}/{e.step_id}", e.plugin, e.submitted_by))
                case JobDeduped():
                    out.append(("JobDeduped", f"{e.pipeline}/{e.step_id}", e.dedupe_reason, e.existing_job_id))
                case JobSkipped():
                    out.append(("JobSkipped", e.reason))
                case JobDispatchFailed():
                    out.append(("JobDispatchFailed", e.error))
                case RouteDepthExceeded():
                    out.append(("RouteDepthExceeded", f"{e.pipeline}/{e.step_id}", str(e.reason)))
                case ContextCreated():
                    out.append(("ContextCreated", f"{e.pipeline}/{e.step_id}"))
                case PipelineTriggered():
                    out.append(("PipelineTriggered", e.pipeline))
                case _:
                    out.append((type(e).__name__,))
    return out


KEY = ("notify", "handle", "repo-x")
ROUTED = (PARENT, "event-1", "p", "s", "notify", "handle")

# (name, pipelines, routes kwargs, what the queue knew, the emitted events, the expected appends)
SUCCESS_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], Known, list[dict[str, Any]], list[tuple[str, ...]]]] = [
    ("an event that triggers a pipeline enqueues its entry with a context record",
     [SINGLE], {}, Known(), [event()],
     [("ContextCreated", "p/s"), ("JobEnqueued", "p/s", "notify", "route")]),
    ("an event that matches no pipeline appends nothing",
     [SINGLE], {}, Known(), [event("repo.deleted")], []),
    ("the same event delivered twice dispatches nothing the second time",
     [SINGLE], {}, Known(routed=frozenset({ROUTED})), [event()], []),
    ("outstanding work with the event's dedupe key dedupes the dispatch",
     [SINGLE], {}, Known(dedupe={KEY: DedupeView(outstanding_job_id="older")}), [event(dedupe_key="repo-x")],
     [("JobDeduped", "p/s", "outstanding", "older")]),
    ("a success within the dedupe ttl dedupes the dispatch",
     [SINGLE], {"dedupe_ttl": 60 * SECOND},
     Known(dedupe={KEY: DedupeView(last_success_job_id="done", last_success_at=NOW - SECOND)}),
     [event(dedupe_key="repo-x")],
     [("JobDeduped", "p/s", "recent_success", "done")]),
    ("a success older than the dedupe ttl does not dedupe",
     [SINGLE], {"dedupe_ttl": 60 * SECOND},
     Known(dedupe={KEY: DedupeView(last_success_job_id="done", last_success_at=NOW - 61 * SECOND)}),
     [event(dedupe_key="repo-x")],
     [("ContextCreated", "p/s"), ("JobEnqueued", "p/s", "notify", "route")]),
    # The one dedupe rule (jobs.duplicate_of): a ttl of 0 disables the recent-success check, even for
    # a success at this very instant. Routing's old copy of the rule lacked the guard and deduped.
    ("with a dedupe ttl of 0 a success just now does not dedupe",
     [SINGLE], {"dedupe_ttl": 0},
     Known(dedupe={KEY: DedupeView(last_success_job_id="done", last_success_at=NOW)}),
     [event(dedupe_key="repo-x")],
     [("ContextCreated", "p/s"), ("JobEnqueued", "p/s", "notify", "route")]),
    ("a second event with the key of a child enqueued in the same batch is deduped against it",
     [SINGLE], {}, Known(dedupe={KEY: DedupeView()}),
     [event(dedupe_key="repo-x"), {**event(dedupe_key="repo-x"), "event_id": "event-2"}],
     [("ContextCreated", "p/s"), ("JobEnqueued", "p/s", "notify", "route"),
      ("JobDeduped", "p/s", "outstanding", "id-3")]),
    ("a baggage claim the payload cannot meet creates the child failed",
     [CLAIMING], {}, Known(), [event(payload={})],
     [("JobEnqueued", "claims/s", "notify", "route"), ("JobDispatchFailed",
       'pipeline "claims" step "s": baggage: source path "payload.repo" not found')]),
]


@pytest.mark.parametrize(("name", "pipelines", "settings", "known", "events", "expected"), SUCCESS_CASES,
                         ids=[c[0] for c in SUCCESS_CASES])
def test_what_a_root_jobs_events_start(name: str, pipelines: list[dict[str, Any]], settings: dict[str, Any],
                                       known: Known, events: list[dict[str, Any]],
                                       expected: list[tuple[str, ...]]) -> None:
    job = parent()
    decision = routing.after_success(routes(*pipelines, **settings), known, job, lineage_of(job), events, "done",
                                     ids(), NOW)
    assert shape(decision) == expected


def test_an_event_no_edge_and_no_pipeline_took_is_reported_unmatched() -> None:
    job = parent()
    decision = routing.after_success(routes(SINGLE), Known(), job, lineage_of(job), [event("repo.deleted")], "done",
                                     ids(), NOW)
    assert [e["type"] for e in decision.unmatched] == ["repo.deleted"]


def test_the_callers_events_are_left_as_they_were() -> None:
    emitted = [event()]
    job = parent()
    decision = routing.after_success(routes(SINGLE), Known(), job, lineage_of(job), emitted, "done", ids(), NOW)
    assert emitted == [event()]
    [enqueued] = [e for a in decision.appends for e in a.events if isinstance(e, JobEnqueued)]
    assert enqueued.payload["payload"] == {"ductile_upstream_plugin": "fetch"}


STEP_CASES: list[tuple[str, int, int, list[tuple[str, ...]]]] = [
    ("a step that emitted nothing routes the synthetic step.succeeded one level deeper", 0, 1,
     [("ContextCreated", "chain/two"), ("JobEnqueued", "chain/two", "archive", "route")]),
    ("a transition at the pipeline's max depth is recorded, not dispatched", 1, 1,
     [("RouteDepthExceeded", "chain/one", "None")]),
    ("a transition at the hop cap is recorded with its reason", 0, routing.HOP_CAP - 1,
     [("RouteDepthExceeded", "chain/one", "hop_cap")]),
]


@pytest.mark.parametrize(("name", "route_depth", "hops", "expected"), STEP_CASES, ids=[c[0] for c in STEP_CASES])
def test_what_a_finished_step_starts(name: str, route_depth: int, hops: int, expected: list[tuple[str, ...]]) -> None:
    chain = {**CHAIN, "max_depth": 1}
    job = parent("chain", "one")
    decision = routing.after_success(routes(chain), Known(), job, lineage_of(job, route_depth, hops), [], "done",
                                     ids(), NOW)
    assert shape(decision) == expected
    enqueued = [e for a in decision.appends for e in a.events if isinstance(e, JobEnqueued)]
    assert all(e.payload["type"] == STEP_SUCCEEDED for e in enqueued)


@pytest.mark.parametrize(("matched", "expected"), [
    (True, [("ContextCreated", "gated/maybe"), ("JobEnqueued", "gated/maybe", "notify", "route")]),
    (False, [("ContextCreated", "gated/maybe"), ("JobEnqueued", "gated/maybe", "notify", "route"),
             ("JobSkipped", "condition false"),
             ("ContextCreated", "gated/after"), ("JobEnqueued", "gated/after", "archive", "route")]),
], ids=["a true switch queues its gated step", "a false switch skips its gated step and routes its successors"])
def test_what_a_switch_starts(matched: bool, expected: list[tuple[str, ...]]) -> None:
    r = routes(GATED)
    switch = next(n for n in r.pipelines["gated"].nodes.values() if n.plugin == SWITCH_PLUGIN)
    job = parent("gated", switch.id, payload=event(payload={"go": matched}))
    decision = routing.after_switch(r, Known(), job, lineage_of(job), matched, ids(), NOW)
    assert shape(decision) == expected
    if not matched:
        after = [e for a in decision.appends for e in a.events if isinstance(e, JobEnqueued)][-1]
        assert after.payload["type"] == STEP_SKIPPED


@pytest.mark.parametrize(("status", "notify", "hook_max_depth", "expected"), [
    (JobStatus.SUCCEEDED, True, 4, [("ContextCreated", "on-done/tell"), ("JobEnqueued", "on-done/tell", "notify", "hook")]),
    (JobStatus.SUCCEEDED, False, 4, []),
    (JobStatus.FAILED, True, 4, []),
    (JobStatus.SUCCEEDED, True, 0, [("RouteDepthExceeded", "/", "hook_max_depth")]),
], ids=["a notifying plugin's success fires job.completed", "a plugin that does not notify fires nothing",
        "a failure fires only job.failed hooks", "a hook past hook_max_depth is recorded, not dispatched"])
def test_which_hooks_a_terminal_job_fires(status: JobStatus, notify: bool, hook_max_depth: int,
                                          expected: list[tuple[str, ...]]) -> None:
    r = routes(HOOK, notify=notify, hook_max_depth=hook_max_depth)
    job = parent()
    decision = routing.after_terminal(r, Known(), job, lineage_of(job), status, {}, ids(), NOW)
    assert shape(decision) == expected
    assert routing.hooks_apply(r, job, status) == (expected != [])


def test_a_trigger_dispatches_the_entries_and_records_the_trigger() -> None:
    decision = routing.trigger(routes(SINGLE), "p", {"x": 1}, ids(), NOW)
    assert shape(decision) == [("ContextCreated", "p/s"), ("JobEnqueued", "p/s", "notify", "api"),
                               ("PipelineTriggered", "p")]
    assert decision.job_ids == ["id-4"]  # after the envelope's event id, the instance and the context


@pytest.mark.parametrize(("payload", "refusal"), [
    ({}, PipelineInputRefused),
    ({"repo": "x" * (1 << 20)}, PayloadTooLarge),
], ids=["a payload the entry's baggage cannot claim is refused", "an entry context over the cap is refused"])
def test_a_trigger_is_refused_before_anything_is_decided(payload: dict[str, Any], refusal: type[Exception]) -> None:
    with pytest.raises(refusal):
        routing.trigger(routes(CLAIMING), "claims", payload, ids(), NOW)


def test_a_dedupe_view_the_caller_did_not_load_is_an_error_not_a_guess() -> None:
    job = parent()
    with pytest.raises(LookupError):
        routing.after_success(routes(SINGLE), Known(), job, lineage_of(job), [event(dedupe_key="repo-x")], "done",
                              ids(), NOW)


def test_dedupe_keys_names_every_step_the_events_can_reach() -> None:
    r = routes(SINGLE, CHAIN)
    assert routing.dedupe_keys(r, parent(), [event(dedupe_key="k"), event("other", dedupe_key="j")]) == {
        ("notify", "handle", "k"), ("archive", "handle", "k")}
