"""Routing: turn a finished job's events into child jobs, in the same transaction (pipelines.md §3–§8).

Runs inside the writer's unit of work that records the parent's terminal event, so a parent is
never terminal before its children exist. The decision is ``ductile.commands.routing`` (pure);
this module loads what it needs through the queue and context readers, mints the ids, reads the
time and appends what it decided.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ductile.app import jobs as app_jobs
from ductile.commands import routing
from ductile.commands.jobs import JobState
from ductile.commands.routing import Decision, Known, Lineage, Routes
from ductile.config.model import DEFAULT_HOOK_MAX_DEPTH
from ductile.events.log import ANY, NO_STREAM, WriteTx
from ductile.events.record import Recorded
from ductile.pipelines.graph import Pipeline
from ductile.projections import contexts, queue


def _new_ids() -> Iterator[str]:
    while True:
        yield str(uuid.uuid4())


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
    routes: Routes = field(init=False)

    def __post_init__(self) -> None:
        self.routes = Routes(pipelines=self.pipelines, max_attempts=self.max_attempts,
                             notify_on_complete=self.notify_on_complete, hook_max_depth=self.hook_max_depth,
                             dedupe_ttl=self.dedupe_ttl)

    # --- entry points ------------------------------------------------------------------------

    def after_success(self, tx: WriteTx, job: JobState, events: list[dict[str, Any]], result: str) -> list[Recorded]:
        """Route what a successful job emitted (or, for a step that emitted nothing, the synthetic
        ``ductile.step.succeeded``)."""
        lineage = self.lineage(tx, job)
        # A job outside any pipeline that emitted nothing routes nothing: read nothing more.
        known = self._known(tx, job, events) if events or self.routes.node(job) is not None else Known()
        decision = routing.after_success(self.routes, known, job, lineage, events, result, _new_ids(), tx.now)
        if self.unmatched is not None:
            for e in decision.unmatched:
                self.unmatched(job, e)
        return self._append(tx, decision)

    def after_switch(self, tx: WriteTx, job: JobState, matched: bool) -> list[Recorded]:
        known = self._known(tx, job, [job.payload])
        return self._append(tx, routing.after_switch(self.routes, known, job, self.lineage(tx, job), matched,
                                                     _new_ids(), tx.now))

    def after_terminal(self, tx: WriteTx, job: JobState, status: str, fields: dict[str, Any]) -> list[Recorded]:
        """Hooks (§8): lifecycle signals of root jobs and hook-pipeline jobs of notifying plugins."""
        if not routing.hooks_apply(self.routes, job, status):
            return []
        # Hook envelopes carry fresh event ids and no dedupe key: nothing of the queue to load.
        return self._append(tx, routing.after_terminal(self.routes, Known(), job, self.lineage(tx, job), status,
                                                       fields, _new_ids(), tx.now))

    def trigger(self, tx: WriteTx, name: str, payload: dict[str, Any]) -> list[str]:
        """``POST /pipeline/{name}``: dispatch the entry steps atomically; returns the job ids.
        Raises ``PipelineInputRefused`` or ``PayloadTooLarge`` and writes nothing when refused."""
        decision = routing.trigger(self.routes, name, payload, _new_ids(), tx.now)
        self._append(tx, decision)
        return decision.job_ids

    # --- loading and appending ---------------------------------------------------------------

    def lineage(self, tx: WriteTx, job: JobState) -> Lineage:
        if job.event_context_id is None:
            return Lineage(parent=job, context={}, context_id=None, hops=0, hook_depth=0)
        found = contexts.find_context(tx.cur, job.event_context_id)
        if found is None:
            return Lineage(parent=job, context={}, context_id=job.event_context_id, hops=0, hook_depth=0)
        return Lineage(parent=job, context=found.context, context_id=job.event_context_id, hops=found.hops,
                       hook_depth=found.hook_depth)

    def _known(self, tx: WriteTx, job: JobState, events: list[dict[str, Any]]) -> Known:
        routed = frozenset(
            (job.job_id, c.source_event_id, c.pipeline, c.step_id, c.plugin, c.command)
            for c in queue.routed_children(tx.cur, job.job_id)
        )
        dedupe = {key: app_jobs.dedupe_view(tx.cur, *key) for key in routing.dedupe_keys(self.routes, job, events)}
        return Known(routed=routed, dedupe=dedupe)

    @staticmethod
    def _append(tx: WriteTx, decision: Decision) -> list[Recorded]:
        recs: list[Recorded] = []
        for a in decision.appends:
            recs += tx.append(a.stream, a.events, NO_STREAM if a.new_stream else ANY)
        return recs
