"""The read pool: concurrent reads on their own connections, released whatever happens, and a
close that never pulls a connection from under a statement (the SIGSEGV of test_sse_load.py).
On every store (tests/stores.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import aiosqlite
import pytest

from ductile.events.log import LogClosed
from ductile.events.read_pool import ReadPool, ReadPoolClosed, fetch_value
from ductile.events.store import EventStore, StoreKind
from tests.stores import raw_connection

pytestmark = pytest.mark.anyio

# A statement that keeps a connection's thread busy for a while (tens of ms and up).
SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT COUNT(*) FROM c"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(store: EventStore) -> EventStore:
    conn = raw_connection(store)
    if store.kind is StoreKind.SQLITE:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t(v INTEGER)")
    conn.execute("INSERT INTO t VALUES (7)")
    conn.close()
    return store


def spoiling_error(store: EventStore) -> Exception:
    """An error that may leave a connection unfit for the next read, on ``store``'s engine."""
    if store.kind is StoreKind.SQLITE:
        return sqlite3.ProgrammingError("misuse")
    import psycopg

    return psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.fixture
async def pool(db: EventStore) -> AsyncIterator[ReadPool]:
    pool = ReadPool(db, size=2)
    yield pool
    await pool.close()


async def test_reads_run_concurrently_on_different_connections(pool: ReadPool) -> None:
    both_in = asyncio.Barrier(2)

    async def read(conn: aiosqlite.Connection) -> tuple[int, int]:
        await both_in.wait()  # a pool that serialised reads would never get the second one here
        return id(conn), await fetch_value(conn, "SELECT v FROM t")

    async with asyncio.timeout(10):
        (a, va), (b, vb) = await asyncio.gather(pool.read(read), pool.read(read))
    assert a != b and va == vb == 7


async def test_connections_are_read_only(pool: ReadPool) -> None:
    with pytest.raises(pool.store.errors):
        await pool.read(lambda c: c.execute_fetchall("INSERT INTO t VALUES (8)"))
    assert await pool.read(lambda c: fetch_value(c, "SELECT COUNT(*) FROM t")) == 1


async def test_a_failed_read_releases_its_connection(db: EventStore) -> None:
    pool = ReadPool(db, size=1)  # a leaked connection would block every later read
    try:
        async def boom(_conn: aiosqlite.Connection) -> None:
            raise ValueError("query refused")

        for _ in range(3):
            with pytest.raises(ValueError, match="query refused"):
                await pool.read(boom)
            with pytest.raises(db.errors):
                await pool.read(lambda c: c.execute_fetchall("SELECT nope FROM t"))
        async with asyncio.timeout(10):
            assert await pool.read(lambda c: fetch_value(c, "SELECT v FROM t")) == 7
    finally:
        await pool.close()


async def test_a_connection_an_error_may_have_spoiled_is_replaced(db: EventStore) -> None:
    pool = ReadPool(db, size=1)
    error = spoiling_error(db)
    try:
        async def spoil(conn: aiosqlite.Connection) -> int:
            raise error

        first = await pool.read(lambda c: asyncio.sleep(0, id(c)))
        assert await pool.read(lambda c: asyncio.sleep(0, id(c))) == first  # reused while healthy
        with pytest.raises(type(error)):
            await pool.read(spoil)
        assert await pool.read(lambda c: fetch_value(c, "SELECT v FROM t")) == 7  # on a fresh one
    finally:
        await pool.close()


async def test_close_waits_for_a_read_in_flight_then_refuses_reads(pool: ReadPool) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(conn: aiosqlite.Connection) -> int:
        entered.set()
        await release.wait()
        value: int = await fetch_value(conn, "SELECT v FROM t")
        return value

    reading = asyncio.create_task(pool.read(held))
    await entered.wait()
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0.05)
    assert not closing.done(), "close() returned under a read in flight"
    with pytest.raises(ReadPoolClosed) as refused:
        await pool.read(lambda c: fetch_value(c, "SELECT v FROM t"))
    assert isinstance(refused.value, LogClosed) and str(refused.value) == "read pool is closed"
    release.set()
    async with asyncio.timeout(10):
        assert await reading == 7
        await closing
    assert pool.closed


async def test_cancelled_reads_then_close_never_crash(db: EventStore) -> None:
    # Cancelling an await does not stop the statement on the connection's thread: closing the
    # connection then must wait for it (a sqlite3 close under a running statement is a SIGSEGV).
    for _ in range(5):
        pool = ReadPool(db, size=4)
        reads = [asyncio.create_task(pool.read(lambda c: fetch_value(c, SLOW, (200_000,)))) for _ in range(16)]
        await asyncio.sleep(0.01)
        for task in reads:
            task.cancel()
        results = await asyncio.gather(*reads, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) or r == 200_000 for r in results)
        async with asyncio.timeout(30):
            await pool.close()
        with pytest.raises(ReadPoolClosed):
            await pool.read(lambda c: fetch_value(c, "SELECT 1"))
