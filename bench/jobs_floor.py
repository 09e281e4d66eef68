"""The floor of the job path: the real dispatcher and slot path, with a writer that costs nothing,
and a second floor with only the durable log under it.

Run by ``bench/jobs.py --floor`` between the bare spawn and the real engine, so that one run
splits the gap between them in three: what the dispatcher's own steps cost around each spawn
(``--log noop``), what a durable, hash-chained log adds before any projection (``--log append``),
and what the projections and the queue's reads add (the engine less the append floor).

What is real in both: ``runtime/dispatcher.py``'s ``Dispatcher`` itself, unchanged and not
subclassed: its claiming loop, the slots (``_slot``, ``_attempt``, ``_record``, ``_commit``,
``_log_outcome``), the completion and claim closures it submits, the process registry, the
plugin environment, the request encoding, ``run_process`` (a real ``Popen`` of the plugin, its
pipes, pidfd and caps), ``classify``, the live hub and the logging. What stands in: the two use
cases that run inside the writer's transaction, ``app/jobs.py``'s ``claim_next`` and
``complete`` (``MemoryJobs``: decided in memory from a queue of job states, by the real decider,
``commands/jobs.py``, so each step appends exactly the events the real use case appends, with the
same fields; no projection is read or written). And the log they append to:

- ``noop``: ``NoOpLog`` (``submit``, ``submit_sync`` and ``on_commit``, one thread that runs each
  batch of submitted units and resolves them with one hop to the loop per batch, as
  ``events/log.py``'s writer does); an append builds the records, nothing is encoded or stored.
- ``append``: the real ``EventLog`` (its writer thread, group commit, the real SQLite store at
  ``durability: full``, the codec, the hash chain), opened with no projections: a unit's events
  are inserted, chained and committed, and acknowledged only after the commit, as on the real path.

``tests/unit/runtime/test_jobs_floor.py`` pins that the stand-ins keep the real ones' signatures,
that a floor run gives the same results and log lines, and that the append floor leaves the real
path's events, chained, in its log.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ductile.app import jobs
from ductile.app.jobs import ClaimedJob, StateChange
from ductile.commands import jobs as decider
from ductile.commands.jobs import AttemptResult, ClaimJob, CompleteAttempt, DedupeView, EnqueueJob, JobState
from ductile.events.log import ANY, NO_STREAM, EventLog, Expected
from ductile.events.record import Recorded
from ductile.events.timefmt import now_ns
from ductile.events.types import SCHEMAS, EventBase, job_stream
from ductile.runtime.catalog import Catalog
from ductile.runtime.dispatcher import Dispatcher, RunProcess
from ductile.runtime.process import ProcessResult, run_process
from ductile.vocabulary import AttemptOutcome

LogKind = Literal["noop", "append"]
LOG_FILE = "floor-log.db"  # the append floor's log, in the state directory


@dataclass(slots=True)
class _Unit:
    work: Callable[[Any], Any]
    loop: asyncio.AbstractEventLoop | None = None
    afuture: asyncio.Future[Any] | None = None
    cfuture: concurrent.futures.Future[Any] | None = None


class NoOpTx:
    """The members of ``WriteTx`` the floor's use cases call, with appends that only build the
    records (positions and stream versions as the log assigns them; no encoding, no chain, no SQL)."""

    def __init__(self, log: NoOpLog, now: int) -> None:
        self._log = log
        self.now = now
        self.recorded: list[Recorded] = []
        self._versions: dict[str, int] = {}

    def known_version(self, stream: str, version: int) -> None:
        self._versions.setdefault(stream, version)

    def append(self, stream: str, events: Sequence[EventBase], expected: Expected = ANY) -> list[Recorded]:
        version = self._versions.get(stream, 0)
        out: list[Recorded] = []
        for event in events:
            self._log.position += 1
            version += 1
            type_ = type(event).__name__
            out.append(Recorded(position=self._log.position, event_id=b"", stream=stream, version=version, type=type_,
                                schema=SCHEMAS[type_], recorded_at=self.now, event=event))
        self._versions[stream] = version
        self.recorded.extend(out)
        return out


class NoOpLog:
    """The event log's writer without its work: each submitted unit runs on one writer thread,
    in batches, against a ``NoOpTx``, and is answered at once."""

    def __init__(self) -> None:
        self.position = 0
        self.batches = 0
        self._units: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._listeners: list[Callable[[list[Recorded]], None]] = []
        self._loop = asyncio.get_running_loop()
        self.thread = threading.Thread(target=self._run, name="noop-writer", daemon=True)
        self.thread.start()

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
            tx = NoOpTx(self, now_ns())
            done: list[tuple[_Unit, Any, BaseException | None]] = []
            for unit in batch:
                try:
                    done.append((unit, unit.work(tx), None))
                except BaseException as exc:  # handed on to the submitter, as the writer does
                    done.append((unit, None, exc))
            self.batches += 1
            for unit, result, exc in done:
                if unit.cfuture is not None:
                    if exc is not None:
                        unit.cfuture.set_exception(exc)
                    else:
                        unit.cfuture.set_result(result)
            # One hop to the loop per batch: its submitters' answers and the commit listeners.
            self._loop.call_soon_threadsafe(self._resolve, [d for d in done if d[0].afuture is not None], tx.recorded)

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


class MemoryJobs:
    """``app/jobs.py``'s writer-side use cases decided in memory: the queue is a deque of job
    ids, each job's state is the decider's own ``JobState`` folded with ``evolve``, and every step
    appends through the transaction it is given what ``commands/jobs.py`` decides for it, as the
    real use case does, telling the transaction the stream's version as the real one does from
    the queue's row (``known_version``: no ``MAX(version)`` lookup).

    Not the real use cases' bookkeeping: no lanes, dedupe keys, plugin state, breakers or routing
    (the bench's plugin has none of them), and a job whose attempt did not succeed is not queued
    again (the bench counts every result that is not a success). The state changes here are not
    undone when the log's writer runs a batch again after a unit raised; nothing the floor
    submits raises, and the test counts the log's events to hold it so."""

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._queued: deque[str] = deque()
        self._jobs: dict[str, tuple[JobState, int]] = {}  # job id -> (state, stream version)
        self._running = 0
        self.results: list[AttemptResult] = []  # every completion, in order: the bench checks them

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.outcome == AttemptOutcome.OK)

    def enqueue(self, tx: Any, cmd: EnqueueJob) -> list[Recorded]:
        """A new job joins the queue: ``enqueue_recorded``'s events for a command without a dedupe key."""
        events = decider.decide_enqueue(cmd, None, DedupeView(), tx.now)
        recs: list[Recorded] = tx.append(job_stream(cmd.job_id), events, NO_STREAM)
        self._jobs[cmd.job_id] = (decider.evolve(None, events[0]), len(events))
        self._queued.append(cmd.job_id)
        return recs

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
            job_id = self._queued.popleft()
            job, version = self._jobs[job_id]
            events = decider.decide(ClaimJob(job_id=job_id, config_snapshot_id=config_snapshot_id, node=node), job, tx.now)
            stream = job_stream(job_id)
            tx.known_version(stream, version)
            tx.append(stream, events)
            self._jobs[job_id] = (decider.evolve(job, events[0]), version + len(events))
            self._running += 1
            claimed.append(ClaimedJob(
                job_id=job_id, plugin=job.plugin, command=job.command, attempt=job.attempt, max_attempts=job.max_attempts,
                payload=job.payload, submitted_by=job.submitted_by, created_at=job.created_at,
                schedule_id=job.schedule_id, parent_job_id=job.parent_job_id, state={}, pipeline=job.pipeline,
                step_id=job.step_id, context=None,
            ))
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
        job, version = self._jobs.pop(job_id)
        cmd = CompleteAttempt(job_id=job_id, attempt=attempt, result=result, backoff_base=backoff_base, jitter=jitter)
        events = decider.decide(cmd, job, tx.now)
        stream = job_stream(job_id)
        tx.known_version(stream, version)
        recs: list[Recorded] = tx.append(stream, events)
        self._running -= 1
        self.results.append(result)
        return recs


@contextlib.contextmanager
def in_memory_use_cases(decided: MemoryJobs) -> Iterator[None]:
    """The dispatcher calls ``jobs.claim_next`` and ``jobs.complete`` through the module: point them
    at ``decided``'s in-memory decisions for the floor's run, and back after."""
    real = jobs.claim_next, jobs.complete
    jobs.claim_next, jobs.complete = decided.claim_next, decided.complete  # type: ignore[assignment]
    try:
        yield
    finally:
        jobs.claim_next, jobs.complete = real


def new_command(plugin: str, command: str, payload: dict[str, Any] | None = None) -> EnqueueJob:
    """A root job as the API enqueues it (attempt 1 of 4, no dedupe key, no pipeline)."""
    return EnqueueJob(job_id=str(uuid.uuid4()), plugin=plugin, command=command, payload=payload or {},
                      submitted_by="api", max_attempts=4)


def _timed(submit_sync: Callable[[Callable[[Any], Any]], Any], waits: list[float]) -> Callable[[Callable[[Any], Any]], Any]:
    def timed(work: Callable[[Any], Any]) -> Any:
        started = time.perf_counter()
        try:
            return submit_sync(work)
        finally:
            waits.append(time.perf_counter() - started)

    return timed


@dataclass(frozen=True)
class FloorRun:
    """One floor run: its wall time, the jobs' decisions and results, what ``measure()`` returned
    just before and after the dispatcher ran, and the log's commits in between."""

    seconds: float
    jobs: MemoryJobs
    measured: tuple[Any, Any] | None
    commits: int
    log_file: Path | None  # the append floor's log (closed by then)


async def run_floor(n: int, catalog: Catalog, state_dir: Path, plugin: str, command: str, workers: int,
                    measure: Callable[[], Any] | None = None, run: RunProcess = run_process,
                    log_kind: LogKind = "noop", durability: str = "full",
                    trace: Callable[[str], None] | None = None, dispatch: bool = True,
                    waits: list[float] | None = None) -> FloorRun:
    """Run ``n`` jobs through the real Dispatcher on the no-op log or on a real log without
    projections (``log_kind``). The jobs are enqueued first, through the log, and not measured.
    ``run`` is the dispatcher's own seam for the process: a canned answer leaves the dispatcher's
    work alone, for counting its instructions under callgrind (which cannot follow a pidfd).
    ``trace`` (the append floor only) is given every SQL statement the log's writer runs;
    ``dispatch=False`` only enqueues (a count of the enqueues' instructions to take away);
    ``waits`` gets how long each of the slots' ``submit_sync`` calls waited (completion and claim)."""
    decided = MemoryJobs(workers)
    log: NoOpLog | EventLog
    if log_kind == "append":
        log = await EventLog(state_dir / LOG_FILE, durability, projections=None).open()
        if trace is not None:
            await log.submit(lambda tx: tx.conn.set_trace_callback(trace))
    else:
        log = NoOpLog()
    if waits is not None:
        # On the instance, so the dispatcher's own calls are the ones timed; the log is unchanged.
        log.submit_sync = _timed(log.submit_sync, waits)  # type: ignore[method-assign]

    def commits() -> int:
        return log.stats.batches if isinstance(log, EventLog) else log.batches

    measured = None
    elapsed, committed = 0.0, 0
    try:
        cmds = [new_command(plugin, command) for _ in range(n)]
        await asyncio.gather(*(log.submit(lambda tx, c=c: decided.enqueue(tx, c)) for c in cmds))
        if dispatch:
            with in_memory_use_cases(decided):
                dispatcher = Dispatcher(log, catalog, max_workers=workers, env_passthrough=[],  # type: ignore[arg-type]
                                        state_dir=state_dir, run=run)
                before = measure() if measure is not None else None
                commits_before = commits()
                started = time.perf_counter()
                task = asyncio.create_task(dispatcher.run())
                while len(decided.results) < n:
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                committed = commits() - commits_before
                if measure is not None:
                    measured = (before, measure())
                await dispatcher.stop(5)
                await task
    finally:
        if isinstance(log, EventLog):
            await log.aclose()
        else:
            log.close()
    return FloorRun(elapsed, decided, measured, committed, log.path if isinstance(log, EventLog) else None)


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
    between them (thread 1: the event loop, 2: the writer, no-op or real, 3-6: the slots; with
    ``--log append`` the writer is the thread whose profile holds blake3, and ``--enqueue-only``
    runs give the enqueues' share of it).
    ``--log append --trace`` counts the log writer's SQL statements per job; ``--waits`` times how
    long a slot waits for its completion's commit (``BENCH_DURABILITY=normal`` to compare)."""
    import argparse
    import statistics
    import tempfile

    import jobs as bench

    from ductile.config.discovery import find_config
    from ductile.config.loader import load_config
    from ductile.runtime.catalog import load_catalog

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--canned", action="store_true", help="no process: the dispatcher's own work around a spawn")
    parser.add_argument("--log", choices=("noop", "append"), default="noop",
                        help="the writer: no-op, or the real durable log without projections")
    parser.add_argument("--trace", action="store_true", help="with --log append: count the writer's SQL statements")
    parser.add_argument("--enqueue-only", action="store_true",
                        help="only enqueue the jobs: under callgrind, the enqueues' share to take from a full run's")
    parser.add_argument("--waits", action="store_true", help="time each slot's wait for its completion's commit")
    args = parser.parse_args()
    if args.trace and args.log != "append":
        parser.error("--trace needs --log append")
    statements = 0
    waits: list[float] | None = [] if args.waits else None

    def count(_sql: str) -> None:
        nonlocal statements
        statements += 1

    with tempfile.TemporaryDirectory() as tmp:
        bench.write_config(Path(tmp))
        config = load_config(find_config(tmp, None))
        cpu = time.process_time()
        floor = asyncio.run(run_floor(args.jobs, load_catalog(config), config.state_path.parent, "catlike", "poll",
                                      bench.WORKERS, measure=lambda: statements, run=canned if args.canned else run_process,
                                      log_kind=args.log, durability=bench.DURABILITY, trace=count if args.trace else None,
                                      dispatch=not args.enqueue_only, waits=waits))
        cpu = time.process_time() - cpu
    if args.enqueue_only:
        print(f"floor ({args.log}): {args.jobs} jobs enqueued, {cpu / args.jobs * 1e6:.1f} us own CPU per job")
        return
    assert floor.measured is not None
    counted = f", {(floor.measured[1] - floor.measured[0]) / args.jobs:.2f} statements" if args.trace else ""
    print(f"floor ({args.log}{', canned' if args.canned else ''}): {args.jobs} jobs, {floor.jobs.succeeded} succeeded, "
          f"{cpu / args.jobs * 1e6:.1f} us own CPU, {floor.commits / args.jobs:.3f} commits{counted} per job, "
          f"{args.jobs / floor.seconds:.0f} jobs/s")
    if waits:
        waits.sort()
        print(f"a slot's wait for its completion's commit (durability {bench.DURABILITY}): median "
              f"{statistics.median(waits) * 1e3:.2f} ms, mean {statistics.mean(waits) * 1e3:.2f}, "
              f"p90 {waits[len(waits) * 9 // 10] * 1e3:.2f}")


if __name__ == "__main__":
    main()
