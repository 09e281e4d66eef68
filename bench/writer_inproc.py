"""The writer thread's work per enqueue and per job turnover, without HTTP or plugins.

For counting rather than timing, like ``bench/api_inproc.py``: a real, durable event log with every
projection, driven from one event loop with the units the gateway submits. ``--turnovers 0`` only
enqueues ``jobs`` jobs, 16 in flight (the API's enqueue unit); with ``--turnovers N`` four slots
then record N attempts that succeeded with catlike's answer, each claiming the next job in the
same unit (the dispatcher's ``complete_and_claim``). Instructions per unit come from callgrind runs
whose difference is the units' (thread 2 is the writer):

    valgrind --tool=callgrind --separate-threads=yes python bench/writer_inproc.py --jobs 200
    valgrind --tool=callgrind --separate-threads=yes python bench/writer_inproc.py --jobs 1200
    # (writer's instructions at 1200 - at 200) / 1000 = per enqueue
    valgrind --tool=callgrind --separate-threads=yes python bench/writer_inproc.py --jobs 1200 --turnovers 1000
    # (writer's instructions with turnovers - without) / 1000 = per job turnover

It also prints the writer's CPU per unit and the SQL statements per unit (a trace callback).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

from ductile.app import jobs
from ductile.commands.jobs import AttemptResult, EnqueueJob
from ductile.events.log import EventLog, WriteTx
from ductile.projections.registry import default_runner
from ductile.vocabulary import AttemptOutcome

SLOTS = 4
IN_FLIGHT = 16
ANSWER = '{"status":"ok","result":"ok"}\n'
SECOND = 1_000_000_000


def command() -> EnqueueJob:
    # As the facade builds a root job for POST /plugin/{plugin}/{command}.
    return EnqueueJob(job_id=str(uuid.uuid4()), plugin="catlike", command="poll", payload={"n": 1},
                      submitted_by="api", max_attempts=4, dedupe_ttl=3600 * SECOND)


def claim(tx: WriteTx) -> tuple[list[jobs.ClaimedJob], list]:
    return jobs.claim_next(tx, SLOTS, {"catlike": SLOTS}, lambda _plugin, _command: None)


class WriterClock:
    """The writer thread's CPU time and statements, read from inside a unit (its own thread)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.statements = 0

    def count(self, _sql: str) -> None:
        self.statements += 1

    async def read(self) -> tuple[float, int]:
        return await self.log.submit(lambda _tx: (time.thread_time(), self.statements))

    async def trace(self) -> None:
        def install(tx: WriteTx) -> None:
            assert threading.current_thread().name == "ductile-writer"
            tx.conn.set_trace_callback(self.count)

        await self.log.submit(install)


async def enqueue(log: EventLog, n: int) -> None:
    left = n

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            cmd = command()
            await log.submit(lambda tx, cmd=cmd: jobs.enqueue(tx, cmd))

    await asyncio.gather(*(client() for _ in range(IN_FLIGHT)))


async def turnovers(log: EventLog, n: int) -> None:
    left = n
    result = AttemptResult(outcome=AttemptOutcome.OK, result=ANSWER, exit_code=0, duration_ms=3)

    async def slot(job: jobs.ClaimedJob | None) -> None:
        nonlocal left
        while job is not None and left > 0:
            left -= 1
            done = job

            def complete_and_claim(tx: WriteTx, done: jobs.ClaimedJob = done) -> tuple[list[jobs.ClaimedJob], list]:
                jobs.complete(tx, done.job_id, done.attempt, result, SECOND, 0.5)
                return claim(tx)

            claimed, _ = await log.submit(complete_and_claim)
            job = claimed[0] if claimed else None

    first, _ = await log.submit(claim)
    await asyncio.gather(*(slot(job) for job in first))


async def main(n_jobs: int, n_turnovers: int, trace: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = await EventLog(Path(tmp) / "state.db", "full", default_runner()).open()
        clock = WriterClock(log)
        try:
            if trace:
                await clock.trace()
            gc.collect()
            gc.freeze()  # as the gateway does once it has started
            cpu0, st0 = await clock.read()
            await enqueue(log, n_jobs)
            cpu1, st1 = await clock.read()
            print(f"{n_jobs} enqueues: writer {(cpu1 - cpu0) / n_jobs * 1000:.3f} ms CPU"
                  + (f", {(st1 - st0) / n_jobs:.2f} statements" if trace else "") + " per enqueue")
            if n_turnovers:
                await turnovers(log, n_turnovers)
                cpu2, st2 = await clock.read()
                print(f"{n_turnovers} turnovers: writer {(cpu2 - cpu1) / n_turnovers * 1000:.3f} ms CPU"
                      + (f", {(st2 - st1) / n_turnovers:.2f} statements" if trace else "") + " per turnover")
                check = log.reader()
                try:
                    done = check.execute("SELECT COUNT(*) FROM job_queue WHERE status = 'succeeded'").fetchone()[0]
                finally:
                    check.close()
                if done != n_turnovers:
                    raise RuntimeError(f"{done} jobs succeeded, expected {n_turnovers}")
        finally:
            await log.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--turnovers", type=int, default=0)
    parser.add_argument("--trace", action="store_true", help="count SQL statements (costs instructions itself)")
    args = parser.parse_args()
    if args.turnovers > args.jobs:
        parser.error("--turnovers must not exceed --jobs")
    sqlite3.enable_callback_tracebacks(True)
    asyncio.run(main(args.jobs, args.turnovers, args.trace))
