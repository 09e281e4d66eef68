"""Routing: turn a finished job's events into child jobs, in the same transaction (pipelines.md §3–§8).

Runs inside the writer's unit of work that records the parent's terminal event, so a parent is
never terminal before its children exist. Every dispatch writes a new immutable context record
(baggage plus Ductile's ``ductile`` namespace) and the child's ``JobEnqueued``; dispatch errors
caused by the pipeline become children created ``failed`` (T12); a step gated off by its switch
is created and skipped at once (T7), and its successors are routed in the same batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ductile.app import jobs as app_jobs
from ductile.commands import jobs
from ductile.commands.jobs import DedupeView, EnqueueJob, JobState
from ductile.config.model import DEFAULT_HOOK_MAX_DEPTH
from ductile.events.log import NO_STREAM, WriteTx
from ductile.events.record import Recorded
from ductile.events.timefmt import rfc3339
from ductile.events.types import (
    ContextCreated,
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
from ductile.projections import contexts, queue
from ductile.vocabulary import JobStatus

HOP_CAP = 64
HOOK_SIGNALS = {JobStatus.SUCCEEDED: "job.completed", JobStatus.FAILED: "job.failed", JobStatus.DEAD: "job.failed",
                JobStatus.TIMED_OUT: "job.timed_out"}


class DispatchRefused(Exception):
    """A pipeline API trigger that cannot be dispatched; nothing is written."""

    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


@dataclass(frozen=True)
class Lineage:
    """Where a dispatch comes from: the parent job and its context record."""

    parent: JobState | None
    context: dict[str, Any]  # the parent's accumulated baggage (with the ``ductile`` namespace)
    context_id: str | None
    hops: int
    hook_depth: int


@dataclass
class Router:
    pipelines: Mapping[str, Pipeline]
    max_attempts: Callable[[str], int]
    plugin_config: Callable[[str], dict[str, Any]]
    notify_on_complete: Callable[[str], bool]
    hook_max_depth: int = DEFAULT_HOOK_MAX_DEPTH
    dedupe_ttl: int = 0  # ns
    # Told of each emitted event that matched no edge and no pipeline (the runtime logs it at
    # DEBUG, pipelines.md §3.2); routing itself does no I/O.
    unmatched: Callable[[JobState, dict[str, Any]], None] | None = None
    by_trigger: dict[str, list[Pipeline]] = field(init=False)
    by_hook: dict[str, list[Pipeline]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_trigger, self.by_hook = {}, {}
        for p in self.pipelines.values():
            if p.on is not None:
                self.by_trigger.setdefault(p.on, []).append(p)
            elif p.on_hook is not None:
                self.by_hook.setdefault(p.on_hook, []).append(p)

    # --- entry points ------------------------------------------------------------------------

    def after_success(self, tx: WriteTx, job: JobState, events: list[dict[str, Any]], result: str) -> list[Recorded]:
        """Route what a successful job emitted (or, for a step that emitted nothing, the synthetic
        ``ductile.step.succeeded``)."""
        lineage = self.lineage(tx, job)
        recs: list[Recorded] = []
        for e in events:
            self._upstream(e, job)
        node = self._node(job)
        edged: set[int] = set()  # the emitted events that follow an edge of the job's node
        if node is not None:
            pipeline = self.pipelines[job.pipeline or ""]
            outgoing = events or [self._envelope(STEP_SUCCEEDED, {"result": result}, job, tx.now)]
            if not events:
                self._upstream(outgoing[0], job)
            for i, e in enumerate(outgoing):
                if events and pipeline.successors(node.id, e["type"]):
                    edged.add(i)
                recs += self._transition(tx, pipeline, node, e, job, lineage)
        for i, e in enumerate(events):
            root_recs, matched = self._root_matches(tx, e, job, lineage)
            recs += root_recs
            if not matched and i not in edged and self.unmatched is not None:
                self.unmatched(job, e)
        return recs

    def after_switch(self, tx: WriteTx, job: JobState, matched: bool) -> list[Recorded]:
        pipeline, node = self.pipelines[job.pipeline or ""], self._node(job)
        assert node is not None
        event = dict(job.payload)
        event["type"] = "ductile.switch.true" if matched else SWITCH_FALSE
        return self._transition(tx, pipeline, node, event, job, self.lineage(tx, job))

    def after_terminal(self, tx: WriteTx, job: JobState, status: str, fields: dict[str, Any]) -> list[Recorded]:
        """Hooks (§8): lifecycle signals of root jobs and hook-pipeline jobs of notifying plugins."""
        signal = HOOK_SIGNALS.get(status)
        if signal is None or not self.by_hook.get(signal) or not self.notify_on_complete(job.plugin):
            return []
        if job.pipeline is not None and job.pipeline in self.pipelines and self.pipelines[job.pipeline].on is not None:
            return []  # steps of on: pipelines never fire hooks
        lineage = self.lineage(tx, job)
        depth = lineage.hook_depth + 1
        if depth > self.hook_max_depth:
            # Not dispatched; recorded so that it is visible (and logged at WARN by the dispatcher).
            return tx.append("router", [RouteDepthExceeded(
                job_id=job.job_id, pipeline="", step_id="", route_depth=depth, route_max_depth=self.hook_max_depth,
                reason="hook_max_depth", at=tx.now)])
        payload = {"job_id": job.job_id, "plugin": job.plugin, "command": job.command, "status": status, **fields}
        recs: list[Recorded] = []
        for p in self.by_hook[signal]:
            if p.from_plugin and p.from_plugin != job.plugin:
                continue
            if p.condition is not None:
                try:
                    if not p.condition.evaluate({"payload": payload}):
                        continue
                except ConditionEvalError:
                    continue
            envelope = {"type": signal, "payload": payload, "source": job.plugin,
                        "timestamp": rfc3339(tx.now), "event_id": str(uuid.uuid4())}
            # A hook job starts a fresh lineage: no baggage, hop count 0 (dispatch adds one per hop).
            fresh = Lineage(parent=job, context={}, context_id=None, hops=-1, hook_depth=depth)
            recs += self._start_instance(tx, p, envelope, job, fresh, "hook")
        return recs

    def trigger(self, tx: WriteTx, name: str, payload: dict[str, Any]) -> list[str]:
        """``POST /pipeline/{name}``: dispatch the entry steps atomically; returns the job ids."""
        p = self.pipelines[name]
        envelope = {"type": p.on if p.on is not None else "api.pipeline.trigger", "payload": payload,
                    "source": "api", "timestamp": rfc3339(tx.now), "event_id": str(uuid.uuid4())}
        root = Lineage(parent=None, context={}, context_id=None, hops=0, hook_depth=0)
        instance = str(uuid.uuid4())
        ids: list[str] = []
        for entry in p.entries:
            node = p.nodes[entry]
            ctx_claims = self._claims(node, envelope, root.context)
            if isinstance(ctx_claims, str):
                raise DispatchRefused(400, ctx_claims)
            merged, _ = ctx_claims
            size = context_size(merged)
            if size > CONTEXT_CAP:
                raise DispatchRefused(413, "pipeline baggage exceeds maximum context size",
                                      {"bytes_actual": size, "bytes_limit": CONTEXT_CAP})
        for entry in p.entries:
            recs = self._dispatch(tx, p, p.nodes[entry], envelope, None, root, instance, 0, "api")
            ids += [r.event.job_id for r in recs if isinstance(r.event, JobEnqueued)]
        if ids:
            tx.append("router", [PipelineTriggered(pipeline=name, job_ids=ids, at=tx.now)])
        return ids

    # --- internals ---------------------------------------------------------------------------

    def lineage(self, tx: WriteTx, job: JobState) -> Lineage:
        if job.event_context_id is None:
            return Lineage(parent=job, context={}, context_id=None, hops=0, hook_depth=0)
        found = contexts.find_context(tx.cur, job.event_context_id)
        if found is None:
            return Lineage(parent=job, context={}, context_id=job.event_context_id, hops=0, hook_depth=0)
        return Lineage(parent=job, context=found.context, context_id=job.event_context_id, hops=found.hops,
                       hook_depth=found.hook_depth)

    def _node(self, job: JobState) -> Node | None:
        if job.pipeline is None or job.step_id is None or job.pipeline not in self.pipelines:
            return None
        return self.pipelines[job.pipeline].nodes.get(job.step_id)

    def _upstream(self, event: dict[str, Any], job: JobState) -> None:
        payload = event.setdefault("payload", {})
        payload.setdefault("ductile_upstream_plugin", job.plugin)
        if job.pipeline is not None:
            payload.setdefault("ductile_upstream_pipeline", job.pipeline)
            payload.setdefault("ductile_upstream_step_id", job.step_id)

    def _envelope(self, type_: str, payload: dict[str, Any], job: JobState, now: int) -> dict[str, Any]:
        """A synthetic event, made now (pipelines.md §3.3): a full envelope like any emitted event."""
        return {"type": type_, "payload": payload, "source": job.plugin, "timestamp": rfc3339(now),
                "event_id": str(uuid.uuid4())}

    def _transition(self, tx: WriteTx, p: Pipeline, node: Node, event: dict[str, Any], job: JobState,
                    lineage: Lineage) -> list[Recorded]:
        ductile = lineage.context.get("ductile", {})
        depth = int(ductile.get("route_depth", 0))
        instance = str(ductile.get("pipeline_instance_id") or uuid.uuid4())
        recs: list[Recorded] = []
        for target in p.successors(node.id, event["type"]):
            reason = None
            if depth >= p.max_depth:
                reason = "max_depth"
            elif lineage.hops + 1 >= HOP_CAP:
                reason = "hop_cap"
            if reason is not None:
                recs += tx.append("router", [RouteDepthExceeded(
                    job_id=job.job_id, pipeline=p.name, step_id=node.id, route_depth=depth, route_max_depth=p.max_depth,
                    reason=None if reason == "max_depth" else reason, at=tx.now)])
                continue
            skip = event["type"] == SWITCH_FALSE and p.nodes[target].kind in ("step", "relay") \
                and node.kind == "switch" and node.gates == target
            recs += self._dispatch(tx, p, p.nodes[target], event, job, lineage, instance, depth + 1, "route", skip=skip)
        return recs

    def _root_matches(self, tx: WriteTx, event: dict[str, Any], job: JobState,
                      lineage: Lineage) -> tuple[list[Recorded], bool]:
        """Start every pipeline whose trigger matches ``event``: (what was appended, whether any matched)."""
        recs: list[Recorded] = []
        matched = False
        for p in self.by_trigger.get(event["type"].strip(), []):
            if p.from_plugin and p.from_plugin != job.plugin:
                continue
            if p.condition is not None:
                try:
                    if not p.condition.evaluate({"payload": event.get("payload", {}), "context": lineage.context}):
                        continue
                except ConditionEvalError as exc:
                    matched = True  # dispatched, as failed children (pipelines.md §3.5)
                    for entry in p.entries:
                        recs += self._failed_child(tx, p, p.nodes[entry], event, job, None,
                                                   f'pipeline "{p.name}" step "{entry}": if: {exc}', "route")
                    continue
            matched = True
            recs += self._start_instance(tx, p, event, job, lineage, "route")
        return recs, matched

    def _start_instance(self, tx: WriteTx, p: Pipeline, event: dict[str, Any], job: JobState, lineage: Lineage,
                        submitted_by: str) -> list[Recorded]:
        if lineage.hops + 1 >= HOP_CAP:
            return tx.append("router", [RouteDepthExceeded(
                job_id=job.job_id, pipeline=p.name, step_id="", route_depth=0, route_max_depth=p.max_depth,
                reason="hop_cap", at=tx.now)])
        instance = str(uuid.uuid4())
        recs: list[Recorded] = []
        for entry in p.entries:
            recs += self._dispatch(tx, p, p.nodes[entry], event, job, lineage, instance, 0, submitted_by)
        return recs

    def _claims(self, node: Node, event: dict[str, Any], parent_ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | str:
        baggage = {k: v for k, v in parent_ctx.items() if k != "ductile"}
        if node.baggage is None:
            return baggage, {}
        try:
            claims = node.baggage.claims(event.get("payload") or {}, baggage)
            return merge_context(baggage, claims), claims
        except BaggageError as exc:
            return str(exc)

    def _dispatch(self, tx: WriteTx, p: Pipeline, node: Node, event: dict[str, Any], parent: JobState | None,
                  lineage: Lineage, instance: str, depth: int, submitted_by: str, skip: bool = False) -> list[Recorded]:
        envelope = {k: event[k] for k in ("type", "payload", "dedupe_key", "source", "timestamp", "event_id")
                    if event.get(k) is not None}
        dedupe_key = event.get("dedupe_key")
        plugin, command = node.plugin, node.command
        if parent is not None and event.get("event_id") and queue.has_routed_child(
                tx.cur, parent.job_id, event["event_id"], p.name, node.id, plugin, command):
            return []  # the same work delivered twice (jobs.md §4.2)
        if dedupe_key and node.kind == "step":
            view = app_jobs.dedupe_view(tx.cur, plugin, command, dedupe_key)
            other, reason = view.outstanding_job_id, "outstanding"
            if other is None and view.last_success_at is not None and view.last_success_at >= tx.now - self.dedupe_ttl:
                other, reason = view.last_success_job_id, "recent_success"
            if other is not None:
                return tx.append("dedupe", [JobDeduped(
                    plugin=plugin, command=command, submitted_by=submitted_by, dedupe_key=dedupe_key,
                    dedupe_reason=reason, existing_job_id=other, parent_job_id=parent.job_id if parent else None,
                    pipeline=p.name, step_id=node.id, event_type=event.get("type"), at=tx.now)])
        claimed = self._claims(node, event, lineage.context)
        if isinstance(claimed, str):
            return self._failed_child(tx, p, node, event, parent, lineage.context_id,
                                      f'pipeline "{p.name}" step "{node.id}": {claimed}', submitted_by)
        merged, claims = claimed
        merged["ductile"] = {"pipeline_instance_id": instance, "route_depth": depth, "route_max_depth": p.max_depth}
        size = context_size(merged)
        if size > CONTEXT_CAP:
            return self._failed_child(tx, p, node, event, parent, lineage.context_id,
                                      f'pipeline "{p.name}" step "{node.id}": context exceeds 1 MiB ({size} bytes)',
                                      submitted_by)
        context_id = str(uuid.uuid4())
        recs = tx.append(context_stream(context_id), [ContextCreated(
            context_id=context_id, parent_id=lineage.context_id, pipeline=p.name, step_id=node.id, claims=claims,
            context=merged, hops=lineage.hops + (1 if parent is not None else 0), hook_depth=lineage.hook_depth,
            at=tx.now)], NO_STREAM)
        job_id = str(uuid.uuid4())
        cmd = EnqueueJob(
            job_id=job_id, plugin=plugin, command=command, payload=envelope, submitted_by=submitted_by,
            max_attempts=1 if node.kind != "step" else self.max_attempts(plugin), dedupe_key=dedupe_key,
            parent_job_id=parent.job_id if parent else None, source_event_id=event.get("event_id"),
            event_context_id=context_id, pipeline=p.name, step_id=node.id,
        )
        enq = tx.append(job_stream(job_id), jobs.decide_enqueue(cmd, None, DedupeView(), tx.now), NO_STREAM)
        recs += enq
        if skip:
            child = jobs.fold([r.event for r in enq])
            assert child is not None
            recs += tx.append(job_stream(job_id), [JobSkipped(job_id=job_id, reason="condition false", attempt=1,
                                                              at=tx.now, **jobs.identity(child))])
            skipped = {**envelope, "type": STEP_SKIPPED, "payload": envelope.get("payload") or {"reason": "condition false"},
                       "event_id": str(uuid.uuid4())}
            child_lineage = Lineage(parent=child, context=merged, context_id=context_id, hops=lineage.hops + 1,
                                    hook_depth=lineage.hook_depth)
            recs += self._transition(tx, p, node, skipped, child, child_lineage)
        return recs

    def _failed_child(self, tx: WriteTx, p: Pipeline, node: Node, event: dict[str, Any], parent: JobState | None,
                      context_id: str | None, error: str, submitted_by: str) -> list[Recorded]:
        job_id = str(uuid.uuid4())
        cmd = EnqueueJob(job_id=job_id, plugin=node.plugin, command=node.command,
                         payload={k: v for k, v in event.items() if v is not None}, submitted_by=submitted_by,
                         max_attempts=1, parent_job_id=parent.job_id if parent else None,
                         source_event_id=event.get("event_id"), event_context_id=context_id, pipeline=p.name,
                         step_id=node.id)
        recs = tx.append(job_stream(job_id), jobs.decide_enqueue(cmd, None, DedupeView(), tx.now), NO_STREAM)
        child = jobs.fold([r.event for r in recs])
        assert child is not None
        return recs + tx.append(job_stream(job_id), [JobDispatchFailed(job_id=job_id, error=error, at=tx.now,
                                                                       **jobs.identity(child))])
