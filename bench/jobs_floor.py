"""The floor of the job path: the real dispatcher and slot path, with a writer that costs nothing.

Run by ``bench/jobs.py --floor`` between the bare spawn and the real engine, so that one run
splits the gap between them in two: what the dispatcher's own steps cost around each spawn (this
floor), and what the durable writer adds (the engine less this floor).

What is real: ``runtime/dispatcher.py``'s ``Dispatcher`` itself, unchanged and not subclassed:
its claiming loop, the slots (``_slot``, ``_attempt``, ``_record``, ``_commit``,
``_log_outcome``), the completion and claim closures it submits, the process registry, the
plugin environment, the request encoding, ``run_process`` (a real ``Popen`` of the plugin, its
pipes, pidfd and caps), ``classify``, the live hub and the logging. What stands in: the event
log (``NoOpLog``: ``submit``, ``submit_sync`` and ``on_commit``, one thread that runs each batch
of submitted units and resolves them with one hop to the loop per batch, as ``events/log.py``'s
writer does) and the two use cases that run inside the writer's transaction,
``app/jobs.py``'s ``claim_next`` and ``complete`` (decided in memory from a queue of jobs: no
SQL, no event encoded, no commit). ``tests/unit/runtime/test_jobs_floor.py`` pins that the
stand-ins keep the real ones' signatures and that a floor run gives the same results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductile.app import jobs
from ductile.app.jobs import ClaimedJob, StateChange
from ductile.commands.jobs import AttemptResult, JobState
from ductile.events.record import Recorded
from ductile.events.timefmt import now_ns
from ductile.events.types import EventBase, JobEnqueued, JobStarted, JobSucceeded
from ductile.runtime.catalog import Catalog
from ductile.runtime.dispatcher import Dispatcher, RunProcess
from ductile.runtime.process import ProcessResult, run_process
from ductile.vocabulary import AttemptOutcome


@dataclass(slots=True)
class _Unit:
    work: Callable[[Any], Any]
    loop: asyncio.AbstractEventLoop | None = None
    afuture: asyncio.Future[Any] | None = None
    cfuture: concurrent.futures.Future[Any] | None = None


class NoOpLog:
    """The event log's writer without its work: each submitted unit runs on one writer thread,
    in batches, and is answered at once; claims and completions are decided in memory."""

    def __init__(self, jobs_: list[ClaimedJob], max_workers: int) -> None:
        self._queued: deque[ClaimedJob] = deque(jobs_)
        self._max_workers = max_workers
        self._running = 0
        self._position = 0
        self.results: list[AttemptResult] = []  # every completion, in order: the bench checks them
        self._units: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._listeners: list[Callable[[list[Recorded]], None]] = []
        self._records: list[Recorded] = []  # the batch being run's, for the commit listeners
        self._loop = asyncio.get_running_loop()
        self.thread = threading.Thread(target=self._run, name="noop-writer", daemon=True)
        self.thread.start()

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.outcome == AttemptOutcome.OK)

    # --- the EventLog members the dispatcher uses ------------------------------------------------

    def on_commit(self, listener: Callable[[list[Recorded]], None]) -> None:
        self._listeners.append(listener)

    async def submit(self, work: Callable[[Any], Any]) -> Any:
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._units.put(_Unit(work, loop=self._loop, afuture=fut))
        return await fut

    def submit_sync(self, work: Callable[[Any], Any]) -> Any:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._units.put(_Unit(work, cfuture=fut))
        return fut.result()

    def close(self) -> None:
        self._units.put(None)
        self.thread.join()

    def _run(self) -> None:
        while True:
            first = self._units.get()
            if first is None:
                return
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    nxt = self._units.get_nowait()
                    if nxt is None:
                        self._units.put(None)  # stop after this batch
                        break
                    batch.append(nxt)
            self._records = []
            done: list[tuple[_Unit, Any, BaseException | None]] = []
            for unit in batch:
                try:
                    done.append((unit, unit.work(None), None))
                except BaseException as exc:  # handed on to the submitter, as the writer does
                    done.append((unit, None, exc))
            for unit, result, exc in done:
                if unit.cfuture is not None:
                    if exc is not None:
                        unit.cfuture.set_exception(exc)
                    else:
                        unit.cfuture.set_result(result)
            # One hop to the loop per batch: its submitters' answers and the commit listeners.
            self._loop.call_soon_threadsafe(self._resolve, [d for d in done if d[0].afuture is not None], self._records)

    def _resolve(self, done: list[tuple[_Unit, Any, BaseException | None]], records: list[Recorded]) -> None:
        for unit, result, exc in done:
            fut = unit.afuture
            if fut is None or fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)
        if records:
            for listener in self._listeners:
                listener(records)

    def _record(self, event: EventBase, job_id: str, version: int) -> Recorded:
        self._position += 1
        rec = Recorded(position=self._position, event_id=b"", stream=f"job-{job_id}", version=version,
                       type=type(event).__name__, schema=1, recorded_at=now_ns(), event=event)
        self._records.append(rec)
        return rec

    # --- the use cases that run in the writer's transaction, decided in memory -------------------

    def enqueue(self, job: ClaimedJob) -> None:
        """A new job joins the queue; its ``JobEnqueued`` wakes the dispatcher as a commit does."""
        self._queued.append(job)
        self._record(JobEnqueued(job_id=job.job_id, plugin=job.plugin, command=job.command, payload=job.payload,
                                 submitted_by=job.submitted_by, max_attempts=job.max_attempts, at=now_ns()),
                     job.job_id, 1)

    def claim_next(
        self,
        tx: Any,
        max_workers: int,
        lane_limits: Mapping[str, int],
        unavailable: Callable[[str, str], str | None],
        scan_limit: int = 500,
        config_snapshot_id: str | None = None,
        threshold: Any = None,
        node: str | None = None,
    ) -> tuple[list[ClaimedJob], list[Recorded]]:
        claimed: list[ClaimedJob] = []
        while self._queued and self._running < min(max_workers, self._max_workers):
            job = self._queued.popleft()
            self._running += 1
            self._record(JobStarted(job_id=job.job_id, attempt=job.attempt, plugin=job.plugin, command=job.command,
                                    submitted_by=job.submitted_by, max_attempts=job.max_attempts, at=now_ns()),
                         job.job_id, 2)
            claimed.append(job)
        return claimed, []

    def complete(
        self,
        tx: Any,
        job_id: str,
        attempt: int,
        result: AttemptResult,
        backoff_base: int,
        jitter: float,
        state_change: Callable[[dict[str, Any]], StateChange | None] | None = None,
        threshold: Any = None,
        after: Callable[[Any, JobState, list[EventBase]], list[Recorded]] | None = None,
    ) -> list[Recorded]:
        self._running -= 1
        self.results.append(result)
        if result.outcome != AttemptOutcome.OK:
            return []  # the bench's plugin succeeds; the bench counts what did not
        event = JobSucceeded(job_id=job_id, attempt=attempt, result=result.result or "", exit_code=result.exit_code,
                             duration_ms=result.duration_ms, stderr=result.stderr, at=now_ns())
        return [self._record(event, job_id, 3)]


@contextlib.contextmanager
def in_memory_use_cases(log: NoOpLog) -> Iterator[None]:
    """The dispatcher calls ``jobs.claim_next`` and ``jobs.complete`` through the module: point them
    at ``log``'s in-memory decisions for the floor's run, and back after."""
    real = jobs.claim_next, jobs.complete
    jobs.claim_next, jobs.complete = log.claim_next, log.complete  # type: ignore[assignment]
    try:
        yield
    finally:
        jobs.claim_next, jobs.complete = real


def new_job(plugin: str, command: str, payload: dict[str, Any] | None = None) -> ClaimedJob:
    """A job as a claim returns it (attempt 1, no state, no pipeline)."""
    return ClaimedJob(job_id=str(uuid.uuid4()), plugin=plugin, command=command, attempt=1, max_attempts=4,
                      payload=payload or {}, submitted_by="api", created_at=now_ns(), schedule_id=None,
                      parent_job_id=None, state={})


def queued_jobs(n: int, plugin: str, command: str) -> list[ClaimedJob]:
    return [new_job(plugin, command) for _ in range(n)]


async def run_floor(n: int, catalog: Catalog, state_dir: Path, plugin: str, command: str, workers: int,
                    measure: Callable[[], Any] | None = None, run: RunProcess = run_process) -> tuple[float, NoOpLog, Any]:
    """Run ``n`` jobs through the real Dispatcher on the no-op log; (seconds, the log, what
    ``measure()`` returned just before the dispatcher stopped). ``run`` is the dispatcher's own
    seam for the process: a canned answer leaves the dispatcher's work alone, for counting its
    instructions under callgrind (which cannot follow a pidfd)."""
    log = NoOpLog(queued_jobs(n, plugin, command), workers)
    measured = None
    with in_memory_use_cases(log):
        dispatcher = Dispatcher(log, catalog, max_workers=workers, env_passthrough=[],  # type: ignore[arg-type]
                                state_dir=state_dir, run=run)
        before = measure() if measure is not None else None
        started = time.perf_counter()
        task = asyncio.create_task(dispatcher.run())
        while len(log.results) < n:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        if measure is not None:
            measured = (before, measure())
        await dispatcher.stop(5)
        await task
    log.close()
    return elapsed, log, measured


CANNED = ProcessResult(stdout=b'{"status":"ok","result":"ok"}\n', stderr="", exit_code=0, duration_ms=1)
CANNED_PID = 2**22 + 9  # above Linux's pid_max: nothing to signal, no /proc entry


def canned(argv: list[str], stdin: bytes, env: dict[str, str], timeout: float, cwd: str | None,
           on_spawn: Callable[[int], None]) -> ProcessResult:
    """catlike's answer without a process: what the dispatcher does around a spawn, alone."""
    on_spawn(CANNED_PID)
    return CANNED


def main() -> None:
    """The floor alone, for counting: ``valgrind --tool=callgrind --separate-threads=yes python
    bench/jobs_floor.py --canned --jobs N`` for two N; per job, the difference over the jobs
    between them (thread 1: the event loop, 2: the no-op writer, 3-6: the slots)."""
    import argparse
    import tempfile

    import jobs as bench

    from ductile.config.discovery import find_config
    from ductile.config.loader import load_config
    from ductile.runtime.catalog import load_catalog

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--canned", action="store_true", help="no process: the dispatcher's own work around a spawn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench.write_config(Path(tmp))
        config = load_config(find_config(tmp, None))
        cpu = time.process_time()
        _, log, _ = asyncio.run(run_floor(args.jobs, load_catalog(config), config.state_path.parent, "catlike", "poll",
                                          bench.WORKERS, run=canned if args.canned else run_process))
        cpu = time.process_time() - cpu
    print(f"floor{' (canned)' if args.canned else ''}: {args.jobs} jobs, {log.succeeded} succeeded, "
          f"{cpu / args.jobs * 1e6:.1f} us own CPU per job")


if __name__ == "__main__":
    main()
