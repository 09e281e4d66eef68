"""The PostgreSQL store's connections (imports psycopg; only ``postgres_store`` imports this module,
and only once a PostgreSQL store opens a connection).

* ``open_writer``: the writer connection, the log's schema created or checked under an advisory
  lock (two processes opening a new database at once create it once).
* ``begin_write``: BEGIN, then the ``writer`` row of ``ductile_meta`` locked ``FOR UPDATE``: the
  log's single write lock, held to commit (see postgres_store.py).
* ``open_reader`` / ``PgAsyncReader``: read-only connections, each transaction REPEATABLE READ.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg

from ductile.events.pg_cursor import PgConnection, PgCursor
from ductile.events.postgres_store import PostgresUnavailable
from ductile.events.schema import ensure_schema
from ductile.events.store import mask_password

T = TypeVar("T")

ERRORS: tuple[type[Exception], ...] = (psycopg.Error,)
CONNECT_TIMEOUT_SECONDS = 10
# Any constant shared by every Ductile process on the database: the key of the advisory lock that
# serialises creating the log's schema (``pg_advisory_xact_lock`` takes a 64-bit integer).
_SCHEMA_LOCK_KEY = 0x6475637469 # "ducti"
_WRITE_LOCK_SQL = "SELECT value FROM ductile_meta WHERE key = 'writer' FOR UPDATE"
_TABLES_SQL = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"


def _connect(url: str, application: str) -> PgConnection:
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                              application_name=application)
    except psycopg.OperationalError as exc:
        # libpq's reasons name the host and the user, never the password; the URL is shown masked.
        raise PostgresUnavailable(f"cannot connect to the event store {mask_password(url)}: "
                                  f"{str(exc).strip()}") from None
    return PgConnection(raw)


class PgWriteConnection(PgConnection):
    """The writer's connection. SQLite's ``BEGIN IMMEDIATE`` (begin and take the write lock now),
    which the projection runner sends for catch-up and rebuild, means ``begin_write`` here."""

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        if sql == "BEGIN IMMEDIATE":
            return begin_write(self)
        return super().execute(sql, params)


def begin_write(conn: Any) -> PgCursor:
    cur: PgCursor = PgConnection.execute(conn, "BEGIN")
    cur.execute(_WRITE_LOCK_SQL)
    return cur


def pg_tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute(_TABLES_SQL).fetchall()}


def open_writer(url: str, durability: str) -> PgWriteConnection:
    conn = _connect(url, "ductile-writer")
    writer = PgWriteConnection(conn.raw)
    try:
        if durability != "full":
            writer.raw.execute("SET synchronous_commit = off")
        writer.execute("BEGIN")
        writer.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))
        ensure_schema(writer, mask_password(url), pg_tables)  # type: ignore[arg-type]
        writer.execute("INSERT OR IGNORE INTO ductile_meta(key, value) VALUES ('writer', '')")
        writer.execute("COMMIT")
    except BaseException:
        if writer.in_transaction:
            writer.raw.execute("ROLLBACK")
        writer.close()
        raise
    return writer


def open_work(url: str) -> PgConnection:
    return _connect(url, "ductile-selfcheck")


def open_reader(url: str) -> PgConnection:
    conn = _connect(url, "ductile-reader")
    conn.raw.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    return conn


class PgAsyncReader:
    """A read-only connection for async code, with aiosqlite's shape (``await`` it to open it,
    ``execute_fetchall``, ``close``): its statements run one after another on its own thread, and
    a close is queued behind a statement a cancelled read left running, never run under it."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ductile-pg-read")
        self._conn: PgConnection | None = None

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> PgAsyncReader:
        try:
            self._conn = await self._run(open_reader, self._url)
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        return self

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _fetchall(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        return self._conn.execute(sql, parameters).fetchall()

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(self._fetchall, sql, parameters)

    async def close(self) -> None:
        try:
            if self._conn is not None:
                await self._run(self._conn.close)
        finally:
            self._thread.shutdown(wait=False)
