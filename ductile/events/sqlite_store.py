"""The SQLite event store (``state.path``): one file in WAL mode, the embedded default.

SQLite's own write lock serialises appenders from every process: ``BEGIN IMMEDIATE`` takes it
before the head is read, so positions and the chain are computed from a head nobody else moves.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from ductile.events import sqlite_binds
from ductile.events.schema import UnknownSchema, ensure_schema
from ductile.events.store import StoreKind, log_line

if TYPE_CHECKING:  # imported where used: the CLI and the fold worker never load asyncio for it
    import aiosqlite

# SQLite primary result codes that mean the storage, not the work, failed: the same work may
# succeed once the disk has room again, the file is writable again, or another writer let go.
_STORAGE_CODES = frozenset({
    5,   # SQLITE_BUSY
    6,   # SQLITE_LOCKED
    7,   # SQLITE_NOMEM
    8,   # SQLITE_READONLY
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
})

# operations.md §10: a writer waits this long for another process's write transaction (a sqlite3
# shell, a copy tool) before ``database is locked``; the single writer makes waiting on ourselves rare.
BUSY_TIMEOUT_MS = 5000

sqlite_binds.register()  # every connection of the process binds None and statuses cheaply


def is_sqlite_storage_error(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _STORAGE_CODES


def connect(path: str | Path, durability: str = "full", readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only = ON")
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def connect_async(path: str | Path) -> aiosqlite.Connection:
    """A read-only aiosqlite connection set up as ``connect(readonly=True)``; await it to open it
    and ``close()`` it once done (its thread keeps the process alive until then)."""
    import aiosqlite

    return aiosqlite.Connection(lambda: connect(path, readonly=True), iter_chunk_size=256)


class EmptyStateDatabase(UnknownSchema):
    """A zero-length file where the state DB should be: its history was lost outside Ductile."""


def prepare_state_file(path: Path) -> bool:
    """Create a missing state DB file 0600 (True: created); refuse an existing one that is empty.

    SQLite creates a new database file 0644 (less the umask) and gives its ``-wal`` and ``-shm``
    files the database file's mode, so creating the file first, private, keeps all three
    private. An existing empty file is not a new gateway: SQLite would happily start a fresh
    log in it and every job, schedule and vault record would be silently gone.
    """
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        pass
    refuse_empty_state_file(path)
    return False


def refuse_empty_state_file(path: Path) -> None:
    if path.stat().st_size == 0:
        raise EmptyStateDatabase(
            f"state database {path} is empty (0 bytes); refusing to start a new event log over it. "
            "Restore it from a backup, or delete the file to start with a new, empty log"
        )


def use_wal(conn: sqlite3.Connection) -> None:
    # Only once the DB is known to be ours: a refused foreign DB keeps its journal mode.
    conn.execute("PRAGMA journal_mode = WAL")


def checkpoint_into_file(conn: sqlite3.Connection, path: Path) -> None:
    """Move every committed page of the write-ahead log into the database file and truncate the
    log (operations.md §2): after a stop the file alone holds the whole event log, so a plain copy
    of it loses nothing. SQLite does this by itself only when the last connection closes; a
    reader still open elsewhere (a CLI, a leaked follower) would leave the events in ``-wal``."""
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as exc:
        log_line(logging.ERROR, "event log checkpoint at close failed", exc, path=str(path))
        return
    if busy:
        # A reader inside a transaction pinned part of the log: the file may lack its newest events.
        log_line(logging.WARNING, "event log checkpoint at close incomplete: a reader held the log",
                 path=str(path))


class SqliteStore:
    """The log in one SQLite file (``EventStore``)."""

    kind = StoreKind.SQLITE

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._created = False

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def file(self) -> Path | None:
        return self.path

    def exists(self) -> bool:
        return self.path.exists()

    def open_writer(self, durability: str) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = prepare_state_file(self.path)
        conn = connect(self.path, durability)
        try:
            conn.execute("BEGIN IMMEDIATE")
            ensure_schema(conn, str(self.path))
            conn.execute("COMMIT")
            use_wal(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        return conn

    def forget_unwritten(self) -> None:
        # A file this open created but never wrote would be refused as an emptied DB next time.
        if self._created and self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()

    def begin_write(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def reopen_writer(self, conn: sqlite3.Connection, durability: str) -> sqlite3.Connection:
        return conn  # a full disk or a lock held elsewhere passes; the file connection stays good

    def announce_append(self, conn: sqlite3.Connection) -> None:
        pass  # one gateway per file: its followers are woken in-process, others poll

    def recover_failed_statement(self, conn: sqlite3.Connection) -> None:
        pass  # SQLite undid the failed statement alone

    def close_writer(self, conn: sqlite3.Connection) -> None:
        checkpoint_into_file(conn, self.path)
        conn.close()

    def reader(self) -> sqlite3.Connection:
        return connect(self.path, readonly=True)

    def connect_async(self) -> aiosqlite.Connection:
        return connect_async(self.path)

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def is_storage_error(self, exc: BaseException) -> bool:
        return is_sqlite_storage_error(exc)

    def is_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def spoils_connection(self, exc: BaseException) -> bool:
        # A statement that failed (``OperationalError``: busy, I/O, no such table) leaves the
        # connection as it was; misuse or a damaged file (``ProgrammingError``,
        # ``DatabaseError``) may not, and a fresh connection costs little.
        return isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.OperationalError)
