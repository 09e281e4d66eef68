"""The dispatcher: claim eligible jobs through the writer, run them, record how they ended.

Slots are filled whenever a job is enqueued or finishes (the log's commit listener wakes us) and
at least every second (retries become due). Claims go through the single writer, so a job is
never claimed twice; lanes and the global limit are counted from the queue projection.
Attempts run on a thread pool (see ``ductile.runtime.process`` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ductile.commands import job_units
from ductile.commands.job_units import ClaimedJob
from ductile.commands.jobs import AttemptResult
from ductile.events.log import EventLog
from ductile.events.record import Recorded
from ductile.events.timefmt import NS, now_ns, parse_rfc3339, rfc3339
from ductile.events.types import JobDead, JobEnqueued, JobFailed, JobRetryScheduled, JobSucceeded
from ductile.plugins.environment import plugin_environment
from ductile.plugins.protocol import InvalidEvent, encode_request, event_for_handle
from ductile.runtime.attempt import Classified, classify
from ductile.runtime.catalog import Catalog
from ductile.runtime.orphans import ProcessRegistry
from ductile.runtime.process import kill_group, run_process
from ductile.system.logs import Log

log = Log("dispatch")

TICK_SECONDS = 1.0


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
    ) -> None:
        self.events = events
        self.catalog = catalog
        self.max_workers = max_workers
        self._env = plugin_environment(os.environ, env_passthrough)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ductile-job")
        self._wake = asyncio.Event()
        self._claiming = True
        self._abandon = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._pids: dict[str, int] = {}
        self.procs = ProcessRegistry(state_dir / "procs")
        self._snapshot = config_snapshot_id
        self._rng = random.Random()
        events.on_commit(self._on_commit)

    # --- wake-ups ------------------------------------------------------------------------------

    def _on_commit(self, records: list[Recorded]) -> None:
        for rec in records:
            if isinstance(rec.event, JobEnqueued):
                self._wake.set()
            elif isinstance(rec.event, JobRetryScheduled):
                # Wake when the retry falls due rather than on the next tick.
                delay = max(0.0, (rec.event.next_retry_at - now_ns()) / NS)
                asyncio.get_running_loop().call_later(delay, self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    def _unavailable(self, plugin: str, command: str) -> str | None:
        loaded = self.catalog.get(plugin)
        if loaded is None:
            return "plugin_unavailable"
        if loaded.command(command) is None:
            return "command_not_supported"
        return None

    # --- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        while self._claiming:
            self._wake.clear()
            await self._fill()
            if not self._claiming:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    async def _fill(self) -> None:
        if len(self._tasks) >= self.max_workers:
            return
        lanes = {name: p.parallelism for name, p in self.catalog.plugins.items()}
        snapshot = self._snapshot()
        claimed, killed = await self.events.submit(
            lambda tx: job_units.claim_next(tx, self.max_workers, lanes, self._unavailable, config_snapshot_id=snapshot)
        )
        for rec in killed:
            if isinstance(rec.event, JobDead):
                log.warn("job dead at claim", job_id=rec.event.job_id, reason=rec.event.reason, error=rec.event.error)
        for job in claimed:
            task = asyncio.create_task(self._execute(job), name=f"job-{job.job_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job runner crashed", error=repr(task.exception()))
        self._wake.set()

    # --- one attempt ---------------------------------------------------------------------------

    async def _execute(self, job: ClaimedJob) -> None:
        plugin = self.catalog.get(job.plugin)
        fields = {"job_id": job.job_id, "plugin": job.plugin, "command": job.command, "attempt": job.attempt}
        if plugin is None:  # the catalog changed between claim and run
            await self._record(job, Classified(AttemptResult(outcome="spawn_error", error="plugin spawn failed: plugin not loaded")), fields)
            return
        timeout = plugin.timeout_for(job.command)
        started = now_ns()
        context = {"ductile_plugin": job.plugin}
        payload: dict | None = job.payload or None
        event = None
        if job.command == "handle":
            try:
                event = event_for_handle(job.payload, rfc3339(parse_rfc3339(job.created_at)) or "", context)
            except InvalidEvent as exc:
                result = AttemptResult(outcome="error", error=f"invalid event: {exc}", permanent_reason="invalid_event")
                await self._record(job, Classified(result), fields)
                return
        stdin = encode_request(
            job_id=job.job_id, command=job.command, config=plugin.entry.config, state=job.state, context=context,
            deadline_at=rfc3339(started + int(timeout * NS)) or "", payload=payload, event=event,
        )
        log.info("job started", **fields)

        def on_spawn(pid: int) -> None:
            self._pids[job.job_id] = pid
            self.procs.record(job.job_id, pid)

        loop = asyncio.get_running_loop()
        proc = await loop.run_in_executor(
            self._pool, run_process, [str(plugin.entrypoint)], stdin, self._env, timeout, None, on_spawn
        )
        self._pids.pop(job.job_id, None)
        if self._abandon:
            return  # shutdown ran out of grace: the job stays running and is recovered at boot
        self.procs.forget(job.job_id)
        classified = classify(
            proc, plugin=job.plugin, command=job.command, manifest=plugin.manifest, timeout=timeout,
            now_rfc3339=rfc3339(now_ns()) or "",
        )
        if classified.response is not None:
            for line in classified.response.logs:
                log.at(line.level, "plugin log", plugin=job.plugin, job_id=job.job_id, command=job.command, message=line.message)
        if proc.stderr_dropped:
            log.warn("plugin stderr truncated", dropped_bytes=proc.stderr_dropped, **fields)
        await self._record(job, classified, fields)

    async def _record(self, job: ClaimedJob, classified: Classified, fields: dict) -> None:
        plugin = self.catalog.get(job.plugin)
        base = int((plugin.entry.retry.backoff_base if plugin else 30.0) * NS)
        jitter = self._rng.random()
        result = classified.result
        recs = await self.events.submit(
            lambda tx: job_units.complete(tx, job.job_id, job.attempt, result, base, jitter, classified.state_change)
        )
        self._log_outcome(recs, classified, fields)

    def _log_outcome(self, recs: list[Recorded], classified: Classified, fields: dict) -> None:
        r = classified.result
        for rec in recs:
            e = rec.event
            if isinstance(e, JobSucceeded):
                if r.stderr:
                    log.debug("plugin stderr", stderr=r.stderr, **fields)
                log.info("job completed", status="succeeded", duration_ms=r.duration_ms, exit_code=r.exit_code, **fields)
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

    # --- shutdown ------------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running attempts finish within ``grace``; kill and abandon the rest."""
        self._claiming = False
        self._wake.set()
        if self._tasks:
            log.info("waiting for running jobs", running=len(self._tasks), grace_seconds=grace)
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            if pending:
                self._abandon = True
                pids = list(self._pids.values())
                log.warn("shutdown grace elapsed; killing running plugins", running=len(pending))
                await asyncio.gather(*(asyncio.to_thread(kill_group, pid) for pid in pids))
                await asyncio.wait(pending, timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> int:
        return len(self._tasks)
