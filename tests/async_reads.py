"""Run the async query functions (``ductile.projections.*_queries``, the SSE reads, the metrics
render) against a test's synchronous in-memory database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiosqlite

T = TypeVar("T")


def run_read(conn: sqlite3.Connection, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
    """``fn`` awaited on an aiosqlite connection to a copy of ``conn``'s database as it is now.

    A copy, because aiosqlite opens its connection on its own thread and closes it when done,
    while the test keeps using ``conn``. Meant for ``:memory:`` databases (a WAL file's image
    does not deserialize); a file database is opened with ``ductile.events.sqlite_store.connect_async``.
    """
    image = conn.serialize()

    def copy() -> sqlite3.Connection:
        fresh = sqlite3.connect(":memory:", check_same_thread=False)
        fresh.deserialize(image)
        return fresh

    async def read() -> T:
        async with aiosqlite.Connection(copy, iter_chunk_size=64) as copied:
            return await fn(copied)

    return asyncio.run(read())
