"""Read-only async connections shared by the gateway's async reads (API routes, SSE catch-up).

The store opens them (``EventStore.connect_async``): aiosqlite on SQLite.

Each connection runs its statements one after another on its own thread (aiosqlite), so a read
never waits for the writer (WAL) nor for a read on another connection. Cancelling a read does not
stop its statement, but nothing can close the connection under it: a close is queued behind the
statement on the same thread (closing a sqlite3 connection while another thread runs a statement
on it crashes the process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ductile.events.log import LogClosed
from ductile.events.sqlite_store import SqliteStore
from ductile.events.store import AsyncReader, EventStore

T = TypeVar("T")

DEFAULT_SIZE = 4  # reads are short; a few threads keep concurrent requests from queueing
_log = logging.getLogger("ductile.events")


class ReadPoolClosed(LogClosed):
    def __str__(self) -> str:
        return "read pool is closed"


async def fetch_one(conn: AsyncReader, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row of a query, or None (one hop to the connection's thread)."""
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0] if rows else None


async def fetch_value(conn: AsyncReader, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row (``COUNT(*)``, ``MAX(…)``)."""
    row = await fetch_one(conn, sql, params)
    return None if row is None else row[0]


class ReadPool:
    """Up to ``size`` read-only connections on the event store, opened on demand. ``where`` is an
    ``EventStore`` or, for SQLite, the state DB's path."""

    def __init__(self, where: EventStore | str | Path, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("a read pool needs at least one connection")
        self.store: EventStore = SqliteStore(Path(where)) if isinstance(where, (str, Path)) else where
        self.size = size
        self._slots = asyncio.Semaphore(size)  # at most ``size`` connections, each used by one read
        self._idle: list[AsyncReader] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, fn: Callable[[AsyncReader], Awaitable[T]]) -> T:
        """``await fn(conn)`` on a connection of its own; the connection goes back to the pool
        whatever happens, even on cancellation."""
        if self._closed:
            raise ReadPoolClosed()
        self._in_flight += 1
        self._drained.clear()
        try:
            async with self._slots:
                if self._closed:
                    raise ReadPoolClosed()
                conn = self._idle.pop() if self._idle else await self.store.connect_async()
                spoiled = False
                try:
                    return await fn(conn)
                except BaseException as exc:
                    spoiled = self.store.spoils_connection(exc)
                    raise
                finally:
                    self._release(conn, spoiled)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()

    def _release(self, conn: AsyncReader, spoiled: bool) -> None:
        if not spoiled:
            self._idle.append(conn)
            return
        # The next read opens a fresh one; this one closes once its thread is idle.
        task = asyncio.get_running_loop().create_task(conn.close(), name="read-pool-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nobody is waiting on this close: the read that spoiled the connection already raised.
            _log.warning("read connection did not close cleanly", exc_info=task.exception(),
                         extra={"component": "eventlog", "fields": {}})

    async def close(self) -> None:
        """Refuse new reads, wait for those in flight, then close every connection (each close
        runs after any statement a cancelled read left running on it)."""
        self._closed = True
        await self._drained.wait()
        idle, self._idle = self._idle, []
        if self._retiring:
            await asyncio.wait(self._retiring)  # their failures are logged by _retired
        await asyncio.gather(*(conn.close() for conn in idle))
