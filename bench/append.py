"""Append throughput of the event log, against raw sqlite3 batched inserts measured in the same run.

    .venv/bin/python bench/append.py [--events N] [--appenders 100] [--projections] [--store postgres [--url URL]]

* value: 100 concurrent asyncio appenders on a fresh ``EventLog`` (durability ``full``, no
  projections unless ``--projections``), each appending one ``JobEnqueued`` to a new job stream
  (``expected=NO_STREAM``, as an enqueue does) until N events in total.
* baseline: raw ``sqlite3`` into the same ``events`` DDL with the same pragmas (WAL,
  ``synchronous=FULL``), ``executemany`` of 100 prebuilt rows of the same size per commit.
* latency: one appender, sequential appends on a fresh log (low load): p50 and p99.

``--store postgres`` measures the same on PostgreSQL (a throwaway server from the test suite's
``tests/pg_server.py``, or ``--url``; each measurement in a new database): the baseline is raw
psycopg ``executemany`` of 100 rows per commit into the same table, the server's durable commit
on both sides (the log's batches include their NOTIFY for other nodes, as always on PostgreSQL).

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
from ductile.events.postgres_store import PostgresStore
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


def _raw_rows(events: list[tuple[str, JobEnqueued]]) -> list[tuple[object, ...]]:
    now = time.time_ns()
    return [(i + 1, uuid.uuid4().bytes, stream, 1, "JobEnqueued", SCHEMAS["JobEnqueued"], now, codec.encode(event),
             os.urandom(32)) for i, (stream, event) in enumerate(events)]


def bench_raw_postgres(url: str, events: list[tuple[str, JobEnqueued]], per_commit: int = 100) -> float:
    import psycopg

    from ductile.events.sql_dialect import to_postgres

    rows = _raw_rows(events)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in EVENTS_DDL.split(";"):
            if statement.strip():
                conn.execute(to_postgres(statement))  # type: ignore[arg-type]
        insert = to_postgres(INSERT)
        started = time.perf_counter()
        for i in range(0, len(rows), per_commit):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, rows[i : i + per_commit])  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


def main_postgres(args: argparse.Namespace) -> None:
    from contextlib import ExitStack

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    with ExitStack() as stack:
        if args.url:
            def database() -> str:
                return str(args.url)
        else:
            from tests.pg_server import start_server

            server = start_server()
            stack.callback(server.stop)

            def database() -> str:
                return stack.enter_context(server.fresh_database())

        events = make_events(args.events)
        baseline = bench_raw_postgres(database(), events)
        print(f"raw psycopg: {args.events} rows, 100 rows/commit, synchronous_commit on: {baseline:,.1f} rows/s")
        url = database()
        value, log = asyncio.run(bench_log(PostgresStore(url), events, args.appenders, args.projections))  # type: ignore[arg-type]
        stats = log.stats
        print(
            f"event log on PostgreSQL: {args.events} events, {args.appenders} appenders, durability full,"
            f" projections {'on' if args.projections else 'off'}:"
            f" {value:,.1f} events/s ({stats.batches} batches, {stats.units / max(stats.batches, 1):.1f} units/batch)"
        )
        url = database()
        p50, p99 = asyncio.run(bench_latency(PostgresStore(url), make_events(args.latency_appends)))  # type: ignore[arg-type]
        print(f"single appender, {args.latency_appends} sequential appends: p50={p50:.3f} ms p99={p99:.3f} ms")
    sys.stdout.flush()
    print(f"RESULT bench=append store=postgres value={value:.1f} baseline={baseline:.1f} ratio={value / baseline:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--appenders", type=int, default=100)
    parser.add_argument("--latency-appends", type=int, default=500)
    parser.add_argument("--projections", action="store_true", help="apply the default projections too")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", help="--store postgres: an empty database to use (default: a throwaway server)")
    args = parser.parse_args(argv)
    if args.store == "postgres":
        main_postgres(args)
        return

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
