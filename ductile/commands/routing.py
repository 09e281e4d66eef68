"""The routing decision (pipelines.md §3–§8): what a finished job's events start, as events to append.

Pure: the use case (``ductile/app/routing.py``) loads what the queue knows (``Known``), supplies
the new ids and the time, and appends the ``Append``s in order. Every dispatch is a new immutable
context record (baggage plus Ductile's ``ductile`` namespace) and the child's ``JobEnqueued``;
dispatch errors caused by the pipeline become children created ``failed`` (T12); a step gated off
by its switch is created and skipped at once (T7), and its successors are routed in the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ductile.commands import jobs
from ductile.commands.errors import PayloadTooLarge, PipelineInputRefused
from ductile.commands.jobs import DedupeView, EnqueueJob, JobState
from ductile.events.timefmt import rfc3339
from ductile.events.types import (
    ContextCreated,
    EventBase,
    JobDeduped,
    JobDispatchFailed,
    JobEnqueued,
    JobSkipped,
    PipelineTriggered,
    RouteDepthExceeded,
    context_stream,
    job_stream,
)
from ductile.pipelines.baggage import CONTEXT_CAP, BaggageError, context_size, merge_context
from ductile.pipelines.conditions import ConditionEvalError
from ductile.pipelines.graph import STEP_SKIPPED, STEP_SUCCEEDED, SWITCH_FALSE, Node, Pipeline
from ductile.vocabulary import JobStatus

HOP_CAP = 64
HOOK_SIGNALS: dict[str, str] = {JobStatus.SUCCEEDED: "job.completed", JobStatus.FAILED: "job.failed", JobStatus.DEAD: "job.failed",
                JobStatus.TIMED_OUT: "job.timed_out"}
ROUTER_STREAM = "router"
DEDUPE_STREAM = "dedupe"

DedupeKey = tuple[str, str, str]  # (plugin, command, dedupe_key)
RoutedKey = tuple[str, str, str, str, str, str]  # (parent job, source event, pipeline, step, plugin, command)


class Append(msgspec.Struct, frozen=True):
    """Events for one stream, in log order; ``new_stream``: the stream must not exist yet."""

    stream: str
    events: list[EventBase]
    new_stream: bool = False


@dataclass(frozen=True)
class Lineage:
    """Where a dispatch comes from: the parent job and its context record."""

    parent: JobState | None
    context: dict[str, Any]  # the parent's accumulated baggage (with the ``ductile`` namespace)
    context_id: str | None
    hops: int
    hook_depth: int


@dataclass(frozen=True)
class Known:
    """What the queue knew before this decision, as the use case loaded it."""

    routed: frozenset[RoutedKey] = frozenset()  # the parent's existing routed children
    dedupe: Mapping[DedupeKey, DedupeView] = field(default_factory=dict)  # every key ``dedupe_keys`` asked for


@dataclass
class Routes:
    """The compiled pipelines and the settings routing obeys."""

    pipelines: Mapping[str, Pipeline]
    max_attempts: Callable[[str], int]
    notify_on_complete: Callable[[str], bool]
    hook_max_depth: int
    dedupe_ttl: int  # ns; 0 disables the recent-success check (the one dedupe rule, jobs.duplicate_of)
    by_trigger: dict[str, list[Pipeline]] = field(init=False)
    by_hook: dict[str, list[Pipeline]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_trigger, self.by_hook = {}, {}
        for p in self.pipelines.values():
            if p.on is not None:
                self.by_trigger.setdefault(p.on, []).append(p)
            elif p.on_hook is not None:
                self.by_hook.setdefault(p.on_hook, []).append(p)

    def node(self, job: JobState) -> Node | None:
        if job.pipeline is None or job.step_id is None or job.pipeline not in self.pipelines:
            return None
        return self.pipelines[job.pipeline].nodes.get(job.step_id)


@dataclass
class Decision:
    appends: list[Append] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)  # emitted events no edge or pipeline took

    @property
    def job_ids(self) -> list[str]:
        return [e.job_id for a in self.appends for e in a.events if isinstance(e, JobEnqueued)]


def dedupe_keys(routes: Routes, job: JobState, events: Iterable[dict[str, Any]]) -> set[DedupeKey]:
    """The (plugin, command, key) lookups a decision over ``events`` may make: every step of the
    job's own pipeline and of the pipelines the events trigger, for each key the events carry."""
    wanted: set[DedupeKey] = set()
    for e in events:
        key = e.get("dedupe_key")
        if not key:
            continue
        pipelines = list(routes.by_trigger.get(str(e.get("type", "")).strip(), []))
        if job.pipeline is not None and job.pipeline in routes.pipelines:
            pipelines.append(routes.pipelines[job.pipeline])
        wanted |= {(n.plugin, n.command, key) for p in pipelines for n in p.nodes.values() if n.kind == "step"}
    return wanted


def after_success(routes: Routes, known: Known, job: JobState, lineage: Lineage, events: list[dict[str, Any]],
                  result: str, ids: Iterator[str], now: int) -> Decision:
    """Route what a successful job emitted (or, for a step that emitted nothing, the synthetic
    ``ductile.step.succeeded``)."""
    batch = _Batch(routes, known, ids, now)
    events = [_upstream(e, job) for e in events]
    node = routes.node(job)
    edged: set[int] = set()  # the emitted events that follow an edge of the job's node
    if node is not None:
        pipeline = routes.pipelines[job.pipeline or ""]
        outgoing = events or [_upstream(batch.envelope(STEP_SUCCEEDED, {"result": result}, job), job)]
        for i, e in enumerate(outgoing):
            if events and pipeline.successors(node.id, e["type"]):
                edged.add(i)
            batch.transition(pipeline, node, e, job, lineage)
    for i, e in enumerate(events):
        if not batch.root_matches(e, job, lineage) and i not in edged:
            batch.decision.unmatched.append(e)
    return batch.decision


def after_switch(routes: Routes, known: Known, job: JobState, lineage: Lineage, matched: bool, ids: Iterator[str],
                 now: int) -> Decision:
    batch = _Batch(routes, known, ids, now)
    pipeline, node = routes.pipelines[job.pipeline or ""], routes.node(job)
    assert node is not None
    event = dict(job.payload)
    event["type"] = "ductile.switch.true" if matched else SWITCH_FALSE
    batch.transition(pipeline, node, event, job, lineage)
    return batch.decision


def after_terminal(routes: Routes, known: Known, job: JobState, lineage: Lineage | None, status: str,
                   fields: dict[str, Any], ids: Iterator[str], now: int) -> Decision:
    """Hooks (§8): lifecycle signals of root jobs and hook-pipeline jobs of notifying plugins.
    ``lineage`` may be None when ``hooks_apply`` says no hook can fire (nothing was loaded)."""
    batch = _Batch(routes, known, ids, now)
    if not hooks_apply(routes, job, status):
        return batch.decision
    assert lineage is not None
    signal = HOOK_SIGNALS[status]
    depth = lineage.hook_depth + 1
    if depth > routes.hook_max_depth:
        # Not dispatched; recorded so that it is visible (and logged at WARN by the dispatcher).
        batch.append(ROUTER_STREAM, [RouteDepthExceeded(
            job_id=job.job_id, pipeline="", step_id="", route_depth=depth, route_max_depth=routes.hook_max_depth,
            reason="hook_max_depth", at=now)])
        return batch.decision
    payload = {"job_id": job.job_id, "plugin": job.plugin, "command": job.command, "status": status, **fields}
    for p in routes.by_hook[signal]:
        if p.from_plugin and p.from_plugin != job.plugin:
            continue
        if p.condition is not None:
            try:
                if not p.condition.evaluate({"payload": payload}):
                    continue
            except ConditionEvalError:
                continue
        envelope = {"type": signal, "payload": payload, "source": job.plugin, "timestamp": rfc3339(now),
                    "event_id": next(ids)}
        # A hook job starts a fresh lineage: no baggage, hop count 0 (dispatch adds one per hop).
        fresh = Lineage(parent=job, context={}, context_id=None, hops=-1, hook_depth=depth)
        batch.start_instance(p, envelope, job, fresh, "hook")
    return batch.decision


def hooks_apply(routes: Routes, job: JobState, status: str) -> bool:
    """Whether a terminal ``status`` of ``job`` can fire any hook pipeline at all."""
    signal = HOOK_SIGNALS.get(status)
    if signal is None or not routes.by_hook.get(signal) or not routes.notify_on_complete(job.plugin):
        return False
    # Steps of on: pipelines never fire hooks.
    return not (job.pipeline is not None and job.pipeline in routes.pipelines
                and routes.pipelines[job.pipeline].on is not None)


def trigger(routes: Routes, name: str, payload: dict[str, Any], ids: Iterator[str], now: int) -> Decision:
    """``POST /pipeline/{name}``: dispatch the entry steps atomically. Refuses (raises) before
    deciding anything when an entry's baggage cannot be claimed or is too large."""
    p = routes.pipelines[name]
    batch = _Batch(routes, Known(), ids, now)
    envelope = {"type": p.on if p.on is not None else "api.pipeline.trigger", "payload": payload,
                "source": "api", "timestamp": rfc3339(now), "event_id": next(ids)}
    root = Lineage(parent=None, context={}, context_id=None, hops=0, hook_depth=0)
    instance = next(ids)
    for entry in p.entries:
        ctx_claims = _claims(p.nodes[entry], envelope, root.context)
        if isinstance(ctx_claims, str):
            raise PipelineInputRefused(name, ctx_claims)
        size = context_size(ctx_claims[0])
        if size > CONTEXT_CAP:
            raise PayloadTooLarge(name, size, CONTEXT_CAP)
    for entry in p.entries:
        batch.dispatch(p, p.nodes[entry], envelope, None, root, instance, 0, "api")
    job_ids = batch.decision.job_ids
    if job_ids:
        batch.append(ROUTER_STREAM, [PipelineTriggered(pipeline=name, job_ids=job_ids, at=now)])
    return batch.decision


def _upstream(event: dict[str, Any], job: JobState) -> dict[str, Any]:
    """The event with its upstream marks (a copy: the caller's event stays as it was)."""
    payload = dict(event.get("payload", {}))
    payload.setdefault("ductile_upstream_plugin", job.plugin)
    if job.pipeline is not None:
        payload.setdefault("ductile_upstream_pipeline", job.pipeline)
        payload.setdefault("ductile_upstream_step_id", job.step_id)
    return {**event, "payload": payload}


def _claims(node: Node, event: dict[str, Any], parent_ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | str:
    baggage = {k: v for k, v in parent_ctx.items() if k != "ductile"}
    if node.baggage is None:
        return baggage, {}
    try:
        claims = node.baggage.claims(event.get("payload") or {}, baggage)
        return merge_context(baggage, claims), claims
    except BaggageError as exc:
        return str(exc)


class _Batch:
    """One decision under way: the appends so far, and what they change in what the queue knows."""

    def __init__(self, routes: Routes, known: Known, ids: Iterator[str], now: int) -> None:
        self.routes, self.ids, self.now = routes, ids, now
        self.decision = Decision()
        self.routed = set(known.routed)
        self.known_dedupe = known.dedupe
        # Children this batch enqueued and left queued: outstanding for the dedupe rule, as the
        # projection would show them to a later dispatch of the same batch.
        self.outstanding: dict[DedupeKey, str] = {}

    def append(self, stream: str, events: list[EventBase], new_stream: bool = False) -> None:
        self.decision.appends.append(Append(stream, events, new_stream))

    def envelope(self, type_: str, payload: dict[str, Any], job: JobState) -> dict[str, Any]:
        """A synthetic event, made now (pipelines.md §3.3): a full envelope like any emitted event."""
        return {"type": type_, "payload": payload, "source": job.plugin, "timestamp": rfc3339(self.now),
                "event_id": next(self.ids)}

    def dedupe_view(self, key: DedupeKey) -> DedupeView:
        if key not in self.known_dedupe:
            raise LookupError(f"routing needs the dedupe view of {key} but it was not loaded (see dedupe_keys)")
        view = self.known_dedupe[key]
        if view.outstanding_job_id is None and key in self.outstanding:
            view = msgspec.structs.replace(view, outstanding_job_id=self.outstanding[key])
        return view

    def transition(self, p: Pipeline, node: Node, event: dict[str, Any], job: JobState, lineage: Lineage) -> None:
        ductile = lineage.context.get("ductile", {})
        depth = int(ductile.get("route_depth", 0))
        instance = str(ductile.get("pipeline_instance_id") or next(self.ids))
        for target in p.successors(node.id, event["type"]):
            reason = None
            if depth >= p.max_depth:
                reason = "max_depth"
            elif lineage.hops + 1 >= HOP_CAP:
                reason = "hop_cap"
            if reason is not None:
                self.append(ROUTER_STREAM, [RouteDepthExceeded(
                    job_id=job.job_id, pipeline=p.name, step_id=node.id, route_depth=depth, route_max_depth=p.max_depth,
                    reason=None if reason == "max_depth" else reason, at=self.now)])
                continue
            skip = event["type"] == SWITCH_FALSE and p.nodes[target].kind in ("step", "relay") \
                and node.kind == "switch" and node.gates == target
            self.dispatch(p, p.nodes[target], event, job, lineage, instance, depth + 1, "route", skip=skip)

    def root_matches(self, event: dict[str, Any], job: JobState, lineage: Lineage) -> bool:
        """Start every pipeline whose trigger matches ``event``; whether any matched."""
        matched = False
        for p in self.routes.by_trigger.get(event["type"].strip(), []):
            if p.from_plugin and p.from_plugin != job.plugin:
                continue
            if p.condition is not None:
                try:
                    if not p.condition.evaluate({"payload": event.get("payload", {}), "context": lineage.context}):
                        continue
                except ConditionEvalError as exc:
                    matched = True  # dispatched, as failed children (pipelines.md §3.5)
                    for entry in p.entries:
                        self.failed_child(p, p.nodes[entry], event, job, None,
                                          f'pipeline "{p.name}" step "{entry}": if: {exc}', "route")
                    continue
            matched = True
            self.start_instance(p, event, job, lineage, "route")
        return matched

    def start_instance(self, p: Pipeline, event: dict[str, Any], job: JobState, lineage: Lineage,
                       submitted_by: str) -> None:
        if lineage.hops + 1 >= HOP_CAP:
            self.append(ROUTER_STREAM, [RouteDepthExceeded(
                job_id=job.job_id, pipeline=p.name, step_id="", route_depth=0, route_max_depth=p.max_depth,
                reason="hop_cap", at=self.now)])
            return
        instance = next(self.ids)
        for entry in p.entries:
            self.dispatch(p, p.nodes[entry], event, job, lineage, instance, 0, submitted_by)

    def dispatch(self, p: Pipeline, node: Node, event: dict[str, Any], parent: JobState | None, lineage: Lineage,
                 instance: str, depth: int, submitted_by: str, skip: bool = False) -> None:
        envelope = {k: event[k] for k in ("type", "payload", "dedupe_key", "source", "timestamp", "event_id")
                    if event.get(k) is not None}
        dedupe_key = event.get("dedupe_key")
        plugin, command = node.plugin, node.command
        if parent is not None and event.get("event_id"):
            routed: RoutedKey = (parent.job_id, event["event_id"], p.name, node.id, plugin, command)
            if routed in self.routed:
                return  # the same work delivered twice (jobs.md §4.2)
        if dedupe_key and node.kind == "step":
            duplicate = jobs.duplicate_of(self.dedupe_view((plugin, command, dedupe_key)), self.routes.dedupe_ttl,
                                          self.now)
            if duplicate is not None:
                reason, other = duplicate
                self.append(DEDUPE_STREAM, [JobDeduped(
                    plugin=plugin, command=command, submitted_by=submitted_by, dedupe_key=dedupe_key,
                    dedupe_reason=reason, existing_job_id=other, parent_job_id=parent.job_id if parent else None,
                    pipeline=p.name, step_id=node.id, event_type=event.get("type"), at=self.now)])
                return
        claimed = _claims(node, event, lineage.context)
        if isinstance(claimed, str):
            self.failed_child(p, node, event, parent, lineage.context_id,
                              f'pipeline "{p.name}" step "{node.id}": {claimed}', submitted_by)
            return
        merged, claims = claimed
        merged["ductile"] = {"pipeline_instance_id": instance, "route_depth": depth, "route_max_depth": p.max_depth}
        size = context_size(merged)
        if size > CONTEXT_CAP:
            self.failed_child(p, node, event, parent, lineage.context_id,
                              f'pipeline "{p.name}" step "{node.id}": context exceeds 1 MiB ({size} bytes)',
                              submitted_by)
            return
        context_id = next(self.ids)
        self.append(context_stream(context_id), [ContextCreated(
            context_id=context_id, parent_id=lineage.context_id, pipeline=p.name, step_id=node.id, claims=claims,
            context=merged, hops=lineage.hops + (1 if parent is not None else 0), hook_depth=lineage.hook_depth,
            at=self.now)], new_stream=True)
        job_id = next(self.ids)
        cmd = EnqueueJob(
            job_id=job_id, plugin=plugin, command=command, payload=envelope, submitted_by=submitted_by,
            max_attempts=1 if node.kind != "step" else self.routes.max_attempts(plugin), dedupe_key=dedupe_key,
            parent_job_id=parent.job_id if parent else None, source_event_id=event.get("event_id"),
            event_context_id=context_id, pipeline=p.name, step_id=node.id,
        )
        enqueued = jobs.decide_enqueue(cmd, None, DedupeView(), self.now)
        self.append(job_stream(job_id), enqueued, new_stream=True)
        self._enqueued(cmd)
        if skip:
            child = jobs.fold(enqueued)
            assert child is not None
            self.append(job_stream(job_id), [JobSkipped(job_id=job_id, reason="condition false", attempt=1,
                                                        at=self.now, **jobs.identity(child))])
            if dedupe_key:
                self.outstanding.pop((plugin, command, dedupe_key), None)  # skipped: no longer outstanding
            skipped = {**envelope, "type": STEP_SKIPPED, "payload": envelope.get("payload") or {"reason": "condition false"},
                       "event_id": next(self.ids)}
            child_lineage = Lineage(parent=child, context=merged, context_id=context_id, hops=lineage.hops + 1,
                                    hook_depth=lineage.hook_depth)
            self.transition(p, node, skipped, child, child_lineage)

    def _enqueued(self, cmd: EnqueueJob) -> None:
        if cmd.parent_job_id is not None and cmd.source_event_id and cmd.pipeline and cmd.step_id:
            self.routed.add((cmd.parent_job_id, cmd.source_event_id, cmd.pipeline, cmd.step_id, cmd.plugin,
                             cmd.command))
        if cmd.dedupe_key:
            self.outstanding.setdefault((cmd.plugin, cmd.command, cmd.dedupe_key), cmd.job_id)

    def failed_child(self, p: Pipeline, node: Node, event: dict[str, Any], parent: JobState | None,
                     context_id: str | None, error: str, submitted_by: str) -> None:
        job_id = next(self.ids)
        cmd = EnqueueJob(job_id=job_id, plugin=node.plugin, command=node.command,
                         payload={k: v for k, v in event.items() if v is not None}, submitted_by=submitted_by,
                         max_attempts=1, parent_job_id=parent.job_id if parent else None,
                         source_event_id=event.get("event_id"), event_context_id=context_id, pipeline=p.name,
                         step_id=node.id)
        enqueued = jobs.decide_enqueue(cmd, None, DedupeView(), self.now)
        self.append(job_stream(job_id), enqueued, new_stream=True)
        self._enqueued(cmd)
        child = jobs.fold(enqueued)
        assert child is not None
        self.append(job_stream(job_id), [JobDispatchFailed(job_id=job_id, error=error, at=self.now,
                                                           **jobs.identity(child))])
