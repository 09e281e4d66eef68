"""Append throughput of the event log, against raw sqlite3 batched inserts measured in the same run.

    .venv/bin/python bench/append.py [--events N] [--appenders 100] [--projections]

* value: 100 concurrent asyncio appenders on a fresh ``EventLog`` (durability ``full``, no
  projections unless ``--projections``), each appending one ``JobEnqueued`` to a new job stream
  (``expected=NO_STREAM``, as an enqueue does) until N events in total.
* baseline: raw ``sqlite3`` into the same ``events`` DDL with the same pragmas (WAL,
  ``synchronous=FULL``), ``executemany`` of 100 prebuilt rows of the same size per commit.
* latency: one appender, sequential appends on a fresh log (low load): p50 and p99.

Events and baseline rows are built before the clocks start, so both sides time storage work only.
The last line is ``RESULT bench=append value=<events/s> baseline=<raw events/s> ratio=<value/baseline>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ductile.events import codec
from ductile.events.log import NO_STREAM, EventLog
from ductile.events.schema import EVENTS_DDL
from ductile.events.types import SCHEMAS, JobEnqueued, job_stream
from ductile.projections.registry import default_runner

INSERT = (
    "INSERT INTO events(position, event_id, stream, version, type, schema, recorded_at, data, chain)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)


def make_events(n: int) -> list[tuple[str, JobEnqueued]]:
    now = time.time_ns()
    out = []
    for i in range(n):
        jid = str(uuid.uuid4())
        event = JobEnqueued(
            job_id=jid,
            plugin="echo",
            command="poll",
            payload={"message": "hello", "n": i},
            submitted_by="api",
            max_attempts=4,
            at=now + i,
        )
        out.append((job_stream(jid), event))
    return out


async def bench_log(
    path: Path, events: list[tuple[str, JobEnqueued]], appenders: int, projections: bool
) -> tuple[float, EventLog]:
    log = EventLog(path, durability="full", projections=default_runner() if projections else None)
    await log.open()
    work = iter(events)

    async def appender() -> None:
        for stream, event in work:
            await log.append(stream, [event], expected=NO_STREAM)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - started
    await log.aclose()
    return len(events) / elapsed, log


async def bench_latency(path: Path, events: list[tuple[str, JobEnqueued]]) -> tuple[float, float]:
    log = EventLog(path, durability="full")
    await log.open()
    samples = []
    for stream, event in events:
        t0 = time.perf_counter_ns()
        await log.append(stream, [event], expected=NO_STREAM)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    await log.aclose()
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def bench_raw(path: Path, events: list[tuple[str, JobEnqueued]], per_commit: int = 100) -> float:
    now = time.time_ns()
    rows = [
        (
            i + 1,
            uuid.uuid4().bytes,
            stream,
            1,
            "JobEnqueued",
            SCHEMAS["JobEnqueued"],
            now,
            codec.encode(event),
            os.urandom(32),
        )
        for i, (stream, event) in enumerate(events)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.executescript(EVENTS_DDL)
    started = time.perf_counter()
    for i in range(0, len(rows), per_commit):
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows[i : i + per_commit])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--appenders", type=int, default=100)
    parser.add_argument("--latency-appends", type=int, default=500)
    parser.add_argument("--projections", action="store_true", help="apply the default projections too")
    args = parser.parse_args(argv)

    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="ductile-bench-") as tmp:
        root = Path(tmp)
        baseline = bench_raw(root / "raw.db", events)
        print(
            f"raw sqlite3: {args.events} rows, 100 rows/commit, WAL, synchronous=FULL: {baseline:,.1f} rows/s"
        )

        value, log = asyncio.run(bench_log(root / "log.db", events, args.appenders, args.projections))
        stats = log.stats
        print(
            f"event log: {args.events} events, {args.appenders} appenders, durability full,"
            f" projections {'on' if args.projections else 'off'}: {value:,.1f} events/s"
            f" ({stats.batches} batches, {stats.units / max(stats.batches, 1):.1f} units/batch)"
        )

        p50, p99 = asyncio.run(bench_latency(root / "latency.db", make_events(args.latency_appends)))
        print(
            f"single appender, {args.latency_appends} sequential appends: p50={p50:.3f} ms p99={p99:.3f} ms"
        )

    sys.stdout.flush()
    print(f"RESULT bench=append value={value:.1f} baseline={baseline:.1f} ratio={value / baseline:.3f}")


if __name__ == "__main__":
    main()
