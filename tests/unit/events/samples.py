"""Sample events and a tiny command bus for the event log conformance suite."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from ductile.commands import jobs
from ductile.events.log import NO_STREAM, EventLog, WriteTx, read_stream
from ductile.events.types import EventBase, JobEnqueued, PluginStateChanged, job_stream

NS = 1_000_000_000


def note(n: int, plugin: str = "p") -> PluginStateChanged:
    """A small event with no job semantics, for tests of the log itself."""
    return PluginStateChanged(plugin=plugin, state={"n": n}, at=n)


def enqueued(job_id: str, at: int = NS, **overrides: Any) -> JobEnqueued:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "plugin": "echo",
        "command": "poll",
        "payload": {"message": "hi"},
        "submitted_by": "api",
        "max_attempts": 3,
        "at": at,
    }
    fields.update(overrides)
    return JobEnqueued(**fields)


def job_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def decide_and_append(tx: WriteTx, cmd: jobs.Command, now: int) -> list[EventBase]:
    """The write side of one job command: fold the stream, decide, append at that version."""
    stream = job_stream(cmd.job_id)
    history = read_stream(tx.conn, stream)
    state = jobs.fold([r.event for r in history])
    events = jobs.decide(cmd, state, now)
    tx.append(stream, events, expected=len(history) or NO_STREAM)
    return events


async def run_command(log: EventLog, cmd: jobs.Command, now: int) -> list[EventBase]:
    return await log.submit(lambda tx: decide_and_append(tx, cmd, now))


def table_rows(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, in an order that does not depend on rowids."""
    return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def snapshot(conn: sqlite3.Connection, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    return {t: table_rows(conn, t) for t in tables}


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)
