"""The dispatcher: claim eligible jobs through the writer, run them, record how they ended.

Each claimed job runs in a *slot*: a worker thread that spawns the plugin, classifies the
outcome, and commits the completion together with the claim of the next eligible job in one
writer transaction, then runs that job itself. A job turnover therefore costs one commit and no
event-loop hop; ``Popen`` from threads also spawns about twice as fast as asyncio's subprocess
transport on small machines. The asyncio side only wakes up to fill free slots: when a job is
enqueued or a retry falls due while a slot is free, when a slot ends after such a job arrived,
and at least every second. While every slot is busy an enqueue only marks the queue as having
work: the slots claim it themselves as they turn over, so the loop is not woken for nothing.

Claims go through the single writer, so a job is never claimed twice; lanes and the global
limit are counted from the queue projection inside the claiming transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ductile.app import jobs
from ductile.app.jobs import ClaimedJob
from ductile.app.routing import Router
from ductile.commands.delivery import Redactor
from ductile.commands.errors import InvalidTransition, Refused
from ductile.commands.jobs import AttemptResult, JobState
from ductile.config.model import DEFAULT_BACKOFF_BASE, DEFAULT_BREAKER_THRESHOLD
from ductile.events.log import EventLog, LogClosed, WriteTx
from ductile.events.record import Recorded
from ductile.events.store import is_storage_error
from ductile.events.timefmt import NS, now_ns, rfc3339
from ductile.events.types import (
    BreakerTransitioned,
    EventBase,
    JobDead,
    JobDeduped,
    JobEnqueued,
    JobFailed,
    JobRetryScheduled,
    JobSucceeded,
    RouteDepthExceeded,
)
from ductile.pipelines.conditions import ConditionEvalError
from ductile.pipelines.graph import RELAY_NOT_AVAILABLE, RELAY_PLUGIN, SWITCH_PLUGIN, Node
from ductile.pipelines.templates import TemplateEvalError
from ductile.plugins.environment import plugin_environment
from ductile.plugins.protocol import InvalidEvent, encode_request, event_for_handle
from ductile.runtime.attempt import Classified, classify
from ductile.runtime.catalog import Catalog
from ductile.runtime.delivery import SecretsAtSpawn, VaultSource, redact
from ductile.runtime.observations import LiveHub
from ductile.runtime.orphans import ProcessRegistry
from ductile.runtime.process import ProcessResult, kill_group, run_process
from ductile.system.logs import Log
from ductile.system.pidlock import process_records_dir
from ductile.vocabulary import AttemptOutcome, DeadOutcome, JobStatus, PermanentReason, RetryReason

log = Log("dispatch")

TICK_SECONDS = 1.0
CORE_PLUGINS = frozenset({SWITCH_PLUGIN, RELAY_PLUGIN})
# While the log cannot be written, a completion is retried after these pauses (doubling).
STORAGE_RETRY_FIRST = 0.1
STORAGE_RETRY_MAX = 2.0

Claim = tuple[list[ClaimedJob], list[Recorded]]
Completed = tuple[list[Recorded], Claim]
T = TypeVar("T")
# run_process's shape: argv, stdin, env, timeout, cwd, on_spawn -> how the process ended.
RunProcess = Callable[[list[str], bytes, dict[str, str], float, str | None, Callable[[int], None]], ProcessResult]


def log_refused_result(job_id: str, exc: Refused) -> None:
    """Say why the job's state refused the result of its attempt. Only a job cancelled while it ran
    (``if_running: cancel``, ``job cancel``) is expected to: it is dead, and its output is discarded
    by design. Any other refusal (the job vanished, or was completed by someone else) loses the
    result of work done, which no code path should do: an ERROR with the decider's reason."""
    if isinstance(exc, InvalidTransition) and exc.status == JobStatus.DEAD:
        log.info("job result discarded: the job was cancelled while it ran", job_id=job_id, reason=str(exc))
    else:
        log.error("job result refused", job_id=job_id, refusal=type(exc).__name__, reason=str(exc))


class Generation:
    """The catalog and router the dispatcher claims and runs with. A reload swaps in a new one
    whole; a job keeps the generation it was claimed under until it ends (config.md §8, step 5)."""

    __slots__ = ("catalog", "router")

    def __init__(self, catalog: Catalog, router: Router | None) -> None:
        self.catalog = catalog
        self.router = router


class Dispatcher:
    def __init__(
        self,
        events: EventLog,
        catalog: Catalog,
        *,
        max_workers: int,
        env_passthrough: list[str],
        state_dir: Path,
        config_snapshot_id: Callable[[], str | None] = lambda: None,
        live: LiveHub | None = None,
        router: Router | None = None,
        run: RunProcess = run_process,
        vault: VaultSource | None = None,
        node: str | None = None,
    ) -> None:
        self.events = events
        self.node = node  # this gateway's node id on a shared store (its claims name it), else None
        self._gen = Generation(catalog, router)
        # job id -> the generation it was claimed under, until its slot picks it up.
        self._claimed_under: dict[str, Generation] = {}
        self.max_workers = max_workers
        self._env = plugin_environment(os.environ, env_passthrough)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ductile-job")
        # One long-lived event the claiming loop waits on; set only when a claim may find work.
        self._wake = asyncio.Event()
        # Work may have become eligible since the last claim the loop made (an enqueue, a retry
        # falling due): a slot that ends then wakes the loop, as the slot's own claim may have
        # run before that work arrived.
        self._pending = True
        self._loop = asyncio.get_running_loop()
        self._claiming = True
        self._abandon = False
        self._skip_grace = asyncio.Event()
        self._slots: set[Future[None]] = set()
        self._slots_lock = threading.Lock()
        self._pids: dict[str, int] = {}
        self.procs = ProcessRegistry(process_records_dir(state_dir))
        self._snapshot = config_snapshot_id
        self._rng = random.Random()
        self._live = live or LiveHub()
        self._run_process = run  # a seam: unit tests pass a fake that plays the plugin's part
        self._secrets = SecretsAtSpawn(events, vault)
        events.on_commit(self._on_commit)

    # --- wake-ups (event loop) -----------------------------------------------------------------

    def _on_commit(self, records: list[Recorded]) -> None:
        for rec in records:
            if isinstance(rec.event, JobEnqueued):
                self._work_arrived()
            elif isinstance(rec.event, JobDead) and rec.event.outcome == DeadOutcome.CANCELLED:
                pid = self._pids.get(rec.event.job_id)
                if pid is not None:  # cancelled while running here: the process group goes
                    self._loop.run_in_executor(None, kill_group, pid)
            elif isinstance(rec.event, JobRetryScheduled):
                # Wake when the retry falls due rather than on the next tick.
                delay = max(0.0, (rec.event.next_retry_at - now_ns()) / NS)
                self._loop.call_later(delay, self._work_arrived)

    def _work_arrived(self) -> None:
        self._pending = True
        if not self._wake.is_set() and self.running < self.max_workers:
            self._wake.set()

    def wake(self) -> None:
        self._pending = True
        self._wake.set()

    @property
    def catalog(self) -> Catalog:
        return self._gen.catalog

    @property
    def router(self) -> Router | None:
        return self._gen.router

    def swap(self, catalog: Catalog, router: Router | None, *, max_workers: int | None = None,
             env_passthrough: list[str] | None = None) -> None:
        """Claim with ``catalog`` and ``router`` from now on (one reference assignment, so a claim
        sees the old generation or the new one, never half of each). Running jobs keep theirs;
        the lanes count them, since a claim counts every running job in the queue.

        A new ``max_workers`` gets a pool of its own size for the slots started from now on; the
        old pool's running slots finish in their threads, which then end. A new
        ``env_passthrough`` is the environment of every spawn from now on."""
        if env_passthrough is not None:
            self._env = plugin_environment(os.environ, env_passthrough)
        if max_workers is not None and max_workers != self.max_workers:
            old, self._pool = self._pool, ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ductile-job")
            self.max_workers = max_workers
            old.shutdown(wait=False)
        self._gen = Generation(catalog, router)
        self.wake()  # a plugin that came back may make queued jobs claimable

    @staticmethod
    def _unavailable_in(catalog: Catalog) -> Callable[[str, str], str | None]:
        return lambda plugin, command: Dispatcher._unavailable(catalog, plugin, command)

    @staticmethod
    def _unavailable(catalog: Catalog, plugin: str, command: str) -> str | None:
        if plugin in CORE_PLUGINS:
            return None
        loaded = catalog.get(plugin)
        if loaded is None:
            return "plugin_unavailable"
        if loaded.command(command) is None:
            return "command_not_supported"
        return None

    async def run(self) -> None:
        while self._claiming:
            self._wake.clear()
            if self.running < self.max_workers:
                self._pending = False  # this claim sees everything committed so far
                try:
                    self._start(*await self.events.submit(self._claim))
                except Exception as exc:
                    if not is_storage_error(exc):
                        raise
                    # The log says so once (and /healthz turns degraded); claim again next tick.
            if not self._claiming:
                break
            # asyncio.timeout, not wait_for: no task per wait on 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._wake.wait()

    def _claim(self, tx: WriteTx) -> Claim:
        if not self._claiming:
            return [], []
        gen = self._gen  # read once: the whole claim sees one generation
        # In-process core steps count against max_workers only, not against a plugin lane.
        lanes = {name: p.parallelism for name, p in gen.catalog.plugins.items()}
        lanes.update(dict.fromkeys(CORE_PLUGINS, self.max_workers))
        claim = jobs.claim_next(tx, self.max_workers, lanes, self._unavailable_in(gen.catalog),
                                config_snapshot_id=self._snapshot(), threshold=self.threshold, node=self.node)
        for job in claim[0]:
            self._claimed_under[job.job_id] = gen
        return claim

    def threshold(self, plugin: str) -> int:
        loaded = self.catalog.get(plugin)
        return loaded.entry.circuit_breaker.threshold if loaded else DEFAULT_BREAKER_THRESHOLD

    def _start(self, claimed: list[ClaimedJob], killed: list[Recorded]) -> None:
        """Give each claimed job its own slot (thread-safe)."""
        for rec in killed:
            if isinstance(rec.event, JobDead):
                log.warn("job dead at claim", job_id=rec.event.job_id, reason=rec.event.reason, error=rec.event.error)
        for job in claimed:
            future = self._pool.submit(self._slot, job)
            with self._slots_lock:
                self._slots.add(future)
            future.add_done_callback(self._slot_ended)

    def _slot_ended(self, future: Future[None]) -> None:
        with self._slots_lock:
            self._slots.discard(future)
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            log.error("job slot crashed", exc=exc, error=repr(exc))
        if self._pending or exc is not None or not self._claiming:
            with contextlib.suppress(RuntimeError):  # the loop may be closed at shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    @property
    def running(self) -> int:
        with self._slots_lock:
            return len(self._slots)

    # --- a slot (worker thread) ----------------------------------------------------------------

    def _slot(self, job: ClaimedJob | None) -> None:
        while job is not None:
            gen = self._claimed_under.pop(job.job_id, None) or self._gen
            fields = {"job_id": job.job_id, "plugin": job.plugin, "command": job.command, "attempt": job.attempt}
            try:
                classified = self._attempt(job, gen, fields)
            except Exception as exc:  # a fault of ours must end the job visibly, never strand it running
                log.error("job preparation failed", exc=exc, **fields)
                classified = Classified(AttemptResult(outcome=AttemptOutcome.ERROR, error=f"internal error: {type(exc).__name__}: {exc}",
                                                      permanent_reason=PermanentReason.PREFLIGHT_ERROR))
            if classified is None:
                return  # shutdown ran out of grace: the job stays running and is recovered at boot
            done = self._record(job, gen, classified, fields)
            if done is None:
                return  # the log closed or shutdown gave up: recovered at the next boot
            recs, (claimed, killed) = done
            self._log_outcome(recs, classified, fields)
            self._start(claimed[1:], killed)
            job = claimed[0] if claimed else None

    def _record(self, job: ClaimedJob, gen: Generation, classified: Classified, fields: dict) -> Completed | None:
        """Commit how the attempt ended. Whatever goes wrong, the job must not stay ``running``
        while no process runs it: a result that cannot be recorded fails the job instead."""
        try:
            return self._commit(self._completion(job, gen, classified), fields)
        except Exception as exc:
            log.error("job result could not be recorded; failing the job", exc=exc, **fields)
            error = f"internal error: the result could not be recorded: {type(exc).__name__}: {exc}"
        r = classified.result
        failed = Classified(AttemptResult(outcome=AttemptOutcome.ERROR, error=error, permanent_reason=PermanentReason.INTERNAL_ERROR,
                                          exit_code=r.exit_code, duration_ms=r.duration_ms, stderr=r.stderr))
        # No claim from here on: whatever failed above may have been the claim. Routing and hooks
        # go last, as they may have been the fault too.
        for route in (True, False):
            try:
                return self._commit(self._completion(job, gen, failed, claim=False, route=route), fields)
            except Exception as exc:
                log.error("job failure could not be recorded", exc=exc, routed=route, **fields)
        return None  # still running in the log: crash recovery re-queues it at the next boot

    def _commit(self, work: Callable[[WriteTx], T], fields: dict) -> T | None:
        """``submit_sync`` that waits out a storage failure (disk full, read-only file): the same
        completion is tried again until it is recorded, the log closes or shutdown gives up."""
        delay = STORAGE_RETRY_FIRST
        failures = 0
        while True:
            try:
                result = self.events.submit_sync(work)
            except LogClosed:
                return None
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                if failures == 0:
                    log.error("job result not recorded: event log not writable; retrying", exc=exc, **fields)
                failures += 1
                if self._abandon:
                    return None
                time.sleep(delay)
                delay = min(delay * 2, STORAGE_RETRY_MAX)
                continue
            if failures:
                log.info("job result recorded after the event log became writable", tries=failures + 1, **fields)
            return result

    def _completion(
        self, job: ClaimedJob, gen: Generation, classified: Classified, claim: bool = True, route: bool = True
    ) -> Callable[[WriteTx], Completed]:
        plugin = gen.catalog.get(job.plugin)
        base = int((plugin.entry.retry.backoff_base if plugin else DEFAULT_BACKOFF_BASE) * NS)
        jitter = self._rng.random()

        def complete_and_claim(tx: WriteTx) -> Completed:
            # The freed slot is claimed in the same transaction: one commit per job turnover.
            try:
                recs = jobs.complete(tx, job.job_id, job.attempt, classified.result, base, jitter,
                                          classified.state_change, self.threshold,
                                          self._after(gen, classified) if route else None)
            except Refused as exc:
                log_refused_result(job.job_id, exc)
                recs = []
            return recs, self._claim(tx) if claim else ([], [])

        return complete_and_claim

    def _after(self, gen: Generation, classified: Classified
               ) -> Callable[[WriteTx, JobState, list[EventBase]], list[Recorded]] | None:
        """Routing and hooks, run inside the completion's transaction, by the job's own generation."""
        router = gen.router
        if router is None:
            return None
        emitted = [msgspec.structs.asdict(e) for e in classified.events]

        def after(tx: WriteTx, job: JobState, outcome: list[EventBase]) -> list[Recorded]:
            out: list[Recorded] = []
            for e in outcome:
                if isinstance(e, JobSucceeded) and e.job_id == job.job_id:
                    if classified.switch_matched is not None:
                        out += router.after_switch(tx, job, classified.switch_matched)
                    else:
                        summary = classified.response.result if classified.response is not None else ""
                        out += router.after_success(tx, job, emitted, summary)
                    out += router.after_terminal(tx, job, JobStatus.SUCCEEDED, hook_fields(e, JobStatus.SUCCEEDED, classified))
                elif isinstance(e, JobFailed) and e.job_id == job.job_id:
                    out += router.after_terminal(tx, job, e.status, hook_fields(e, e.status, classified))
            return out

        return after

    def _attempt(self, job: ClaimedJob, gen: Generation, fields: dict) -> Classified | None:
        if job.plugin in CORE_PLUGINS:
            return self._preflight(job, self._core_step(job, gen))
        plugin = gen.catalog.get(job.plugin)
        if plugin is None:  # the catalog changed between claim and run
            return Classified(AttemptResult(outcome=AttemptOutcome.SPAWN_ERROR, error="plugin spawn failed: plugin not loaded"))
        timeout = plugin.timeout_for(job.command)
        started = now_ns()
        context = step_context(job)
        event = None
        if job.command == "handle":
            try:
                event = event_for_handle(job.payload, rfc3339(job.created_at) or "", context)
            except InvalidEvent as exc:
                return self._preflight(job, Classified(AttemptResult(
                    outcome=AttemptOutcome.ERROR, error=f"invalid event: {exc}", permanent_reason=PermanentReason.INVALID_EVENT)))
            node = self._node(job, gen)
            if node is not None and node.with_spec is not None:
                scope = {"payload": event["payload"], "context": context, "config": plugin.entry.config}
                try:
                    event["payload"] = node.with_spec.apply(event["payload"], scope)
                except TemplateEvalError as exc:
                    return self._preflight(job, Classified(AttemptResult(
                        outcome=AttemptOutcome.ERROR, error=str(exc), permanent_reason=PermanentReason.WITH_ERROR)))
        # Composed right before each spawn (each attempt), so a roll reaches the next attempt.
        delivery = self._secrets.prepare(gen.catalog, plugin, job.job_id)
        if isinstance(delivery, Classified):
            return self._preflight(job, delivery)
        self._preflight(job, None)
        stdin = encode_request(
            job_id=job.job_id, command=job.command, config=plugin.entry.config, state=job.state, context=context,
            deadline_at=rfc3339(started + int(timeout * NS)) or "", payload=job.payload or None, event=event,
            secrets=delivery.secrets or None,
        )
        # DEBUG: at info a job is one line, its completion (which names the attempt and duration).
        log.debug("job started", **fields)

        def on_spawn(pid: int) -> None:
            self._pids[job.job_id] = pid
            self.procs.record(job.job_id, pid)
            if self._abandon:
                # Spawned after the stop stopped waiting (the job was claimed, its process not yet
                # started when the running ones were killed): it goes too, and recovery re-runs it.
                # No grace: this thread is the one that reaps it, so the leader would look alive.
                kill_group(pid, grace=0)
                return
            if self._live.count:  # the frame is built only for someone watching
                self._live.publish("plugin.spawned", {"at": rfc3339(now_ns()), "pid": pid, **fields})

        proc = self._run_process([str(plugin.entrypoint)], stdin, self._env, timeout, None, on_spawn)
        self._pids.pop(job.job_id, None)
        if self._abandon:
            return None
        self.procs.forget(job.job_id)
        classified = classify(
            proc, plugin=job.plugin, command=job.command, manifest=plugin.manifest, timeout=timeout,
            now_rfc3339=rfc3339(now_ns()) or "",
        )
        if delivery.secrets:
            classified = redact(classified, Redactor(delivery.secrets))
        if classified.response is not None:
            for line in classified.response.logs:
                log.at(line.level, "plugin log", plugin=job.plugin, job_id=job.job_id, command=job.command, message=line.message)
            if classified.response.status == "ok" and not classified.response.result.strip():
                # Accepted and stored as "" (plugins.md §6), but a summary is expected.
                log.warn("plugin returned ok without a result", **fields)
        if proc.stderr_dropped:
            log.warn("plugin stderr truncated", dropped_bytes=proc.stderr_dropped, **fields)
        return classified

    def _preflight(self, job: ClaimedJob, failed: Classified | None) -> Classified | None:
        """Publish the live ``job.preflight`` of a pipeline step (jobs.md §6.2, §11): ``fail`` with
        the reason when preparing it ended the job, else ``run``. Returns ``failed`` unchanged."""
        if job.pipeline is not None:
            reason = failed.result.permanent_reason if failed is not None else None
            decision = "fail" if reason is not None else "run"
            self._live.publish("job.preflight", {"at": rfc3339(now_ns()), "job_id": job.job_id, "plugin": job.plugin,
                                                 "command": job.command, "decision": decision, "reason": reason})
        return failed

    @staticmethod
    def _node(job: ClaimedJob, gen: Generation) -> Node | None:
        if gen.router is None or job.pipeline is None or job.step_id is None:
            return None
        pipeline = gen.router.pipelines.get(job.pipeline)
        return pipeline.nodes.get(job.step_id) if pipeline is not None else None

    def _core_step(self, job: ClaimedJob, gen: Generation) -> Classified:
        """``core.switch`` evaluates in-process; ``core.relay`` is not in this release."""
        node = self._node(job, gen)
        if job.plugin == RELAY_PLUGIN or node is None or node.condition is None:
            error = RELAY_NOT_AVAILABLE if job.plugin == RELAY_PLUGIN else "switch node not found"
            return Classified(AttemptResult(outcome=AttemptOutcome.ERROR, error=error, permanent_reason=PermanentReason.PREFLIGHT_ERROR))
        # config is the gated plugin's for a gated uses step, and empty for steps/split/call blocks.
        target = gen.router.pipelines[job.pipeline or ""].nodes.get(node.gates or "") if gen.router else None
        gated = gen.catalog.get(target.plugin) if target is not None and target.kind == "step" else None
        scope = {"payload": job.payload.get("payload") or {}, "context": step_context(job),
                 "config": gated.entry.config if gated is not None else {}}
        try:
            matched = node.condition.evaluate(scope)
        except ConditionEvalError as exc:
            return Classified(AttemptResult(outcome=AttemptOutcome.ERROR, error=str(exc), permanent_reason=PermanentReason.PREFLIGHT_ERROR))
        kind = "ductile.switch.true" if matched else "ductile.switch.false"
        result = msgspec.json.encode({"matched": matched, "event": kind}).decode()
        return Classified(AttemptResult(outcome=AttemptOutcome.OK, result=result), switch_matched=matched)

    def _log_outcome(self, recs: list[Recorded], classified: Classified, fields: dict) -> None:
        r = classified.result
        for rec in recs:
            e = rec.event
            if isinstance(e, JobSucceeded):
                if r.stderr:
                    log.debug("plugin stderr", stderr=r.stderr, **fields)
                log.info("job completed", status=JobStatus.SUCCEEDED, duration_ms=r.duration_ms, exit_code=r.exit_code, **fields)
            elif isinstance(e, JobRetryScheduled):
                if r.stderr:
                    log.warn("plugin stderr", stderr=r.stderr, **fields)
                log.warn("job retry scheduled", error=e.error, reason=e.reason, backoff_ms=e.backoff_ms,
                         next_retry_at=rfc3339(e.next_retry_at), **fields)
            elif isinstance(e, JobFailed):
                if r.stderr:
                    log.warn("plugin stderr", stderr=r.stderr, **fields)
                log.warn("job completed", status=e.status, error=e.error, reason=e.reason,
                         duration_ms=r.duration_ms, exit_code=r.exit_code, **fields)
            elif isinstance(e, JobDeduped):  # a routed dispatch dropped by dedupe: never silent (jobs.md §4)
                log.info("job deduped", plugin=e.plugin, command=e.command, dedupe_key=e.dedupe_key,
                         existing_job_id=e.existing_job_id, dedupe_reason=e.dedupe_reason, parent_job_id=e.parent_job_id,
                         pipeline=e.pipeline, step_id=e.step_id)
            elif isinstance(e, RouteDepthExceeded):
                log.warn("route not dispatched: depth limit", job_id=e.job_id, pipeline=e.pipeline or None,
                         step_id=e.step_id or None, route_depth=e.route_depth, route_max_depth=e.route_max_depth,
                         reason=e.reason or "max_depth")
            elif isinstance(e, BreakerTransitioned):
                log.warn("circuit breaker state changed", plugin=e.plugin, command=e.command, from_state=e.from_state,
                         to_state=e.to_state, failure_count=e.failure_count, reason=e.reason, job_id=e.job_id)

    # --- shutdown ------------------------------------------------------------------------------

    def skip_grace(self) -> None:
        """A second SIGTERM/SIGINT: stop waiting for running jobs now."""
        self._skip_grace.set()

    async def _wait_grace(self, pending: set[asyncio.Future[None]], grace: float) -> set[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        skip = asyncio.create_task(self._skip_grace.wait())
        try:
            while pending and not self._skip_grace.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait(pending | {skip}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
        finally:
            skip.cancel()
        return pending

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running attempts finish within ``grace``; kill and abandon the rest."""
        self._claiming = False
        self._wake.set()
        with self._slots_lock:
            slots = [asyncio.wrap_future(f) for f in self._slots]
        if slots:
            log.info("waiting for running jobs", running=len(slots), grace_seconds=grace)
            pending = await self._wait_grace(set(slots), grace)
            if pending:
                self._abandon = True
                pids = list(self._pids.values())
                log.warn("shutdown grace elapsed; killing running plugins", running=len(pending))
                await asyncio.gather(*(asyncio.to_thread(kill_group, pid) for pid in pids))
                await asyncio.wait(pending, timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.running == 0:  # an abandoned slot may still hold its record open
            self.procs.close()


def step_context(job: ClaimedJob) -> dict[str, Any]:
    """The request ``context`` (plugins.md §5, pipelines.md §4): baggage plus Ductile's keys."""
    context: dict[str, Any] = {"ductile_plugin": job.plugin}
    if job.context is None:
        return context
    ductile = job.context.get("ductile", {})
    context.update({
        "ductile_pipeline": job.pipeline, "ductile_step_id": job.step_id,
        "ductile_pipeline_instance_id": ductile.get("pipeline_instance_id"),
        "ductile_route_depth": ductile.get("route_depth"), "ductile_route_max_depth": ductile.get("route_max_depth"),
    })
    context.update(job.context)
    return context


# The retry decisions a hook names as such (pipelines.md §8); any other reason is "non_retryable".
_HOOK_REASONS = frozenset({RetryReason.ATTEMPTS_EXHAUSTED, RetryReason.PLUGIN_RETRY_FALSE, RetryReason.EXIT_CODE_78})


def hook_fields(e: Any, status: JobStatus, classified: Classified) -> dict[str, Any]:
    """The hook payload's extra keys (pipelines.md §8)."""
    summary = classified.response.result if classified.response is not None else ""
    out: dict[str, Any] = {"attempt": e.attempt, "duration_ms": e.duration_ms, "submitted_by": e.submitted_by}
    if status == JobStatus.SUCCEEDED:
        text = f"Job completed [{e.plugin}]: {summary}"
        out["result"] = summary
    else:
        text = f"Job {'timed out' if status == JobStatus.TIMED_OUT else 'failed'} [{e.plugin}]: {e.error}"
        out["error"] = e.error
        out["reason"] = e.reason if e.reason in _HOOK_REASONS \
            else "non_retryable"
    out["message"] = out["text"] = text
    return out
