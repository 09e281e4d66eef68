"""The event store seam: what differs between the storage engines the event log runs on.

``EventLog`` (log.py) owns everything that is the same on every engine: the single writer thread,
group commit with a savepoint per unit of work, positions and the hash chain computed inside the
write transaction from the current head, the projections applied in that transaction, follow.
An ``EventStore`` owns what is not: how the writer connection is opened and tuned, how the write
transaction begins (and so how concurrent appenders from several processes are serialised),
which errors mean the storage failed, how readers connect, the log's DDL, and what happens at stop.

Two stores: ``SqliteStore`` (``state.path``, the embedded default) and ``PostgresStore``
(``state.url: postgresql://…``). ``open_store`` picks one from a path or a URL. psycopg is imported
only by the PostgreSQL store, and only when one is opened: a SQLite gateway never loads it.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

FOLLOW_POLL_SECONDS = 1.0

_log = logging.getLogger("ductile.events")


def log_line(level: int, msg: str, exc: BaseException | None = None, **fields: Any) -> None:
    """One line of the event log's component, in the shape ductile.system.logs formats (that
    package sits above this one); ``exc`` becomes the line's ``stack`` there."""
    _log.log(level, msg, exc_info=exc, extra={"component": "eventlog", "fields": fields})


UNIT_SAVEPOINT = "unit"  # the savepoint log.py wraps each unit of work in (its literal "SAVEPOINT unit")


class StoreKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# ``scheme://user:password@host``: the password is everything between the user's colon and the
# last ``@`` before the host (a password may itself hold ``@`` or ``:``).
_USERINFO_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<password>.*)(?P<tail>@[^@]*)$", re.IGNORECASE)
MASKED_PASSWORD = "***"
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)(?P<value>[^&#]*)", re.IGNORECASE)
_TEMPLATE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def mask_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: the only form of a store URL that
    may reach a log line, an error, a repr, ``config show`` or the event log."""
    if "://" not in url:
        return url
    url = _QUERY_PASSWORD.sub(_masked_query, url)
    found = _USERINFO_PASSWORD.match(url)
    if found is None or _TEMPLATE.fullmatch(found["password"]):
        return url  # no password, or a config template (``${PGPASSWORD}``) that holds none
    return f"{found['head']}{MASKED_PASSWORD}{found['tail']}"


def _masked_query(found: re.Match[str]) -> str:
    value = found["value"]
    return found[0] if _TEMPLATE.fullmatch(value) else f"{found['key']}{MASKED_PASSWORD}"


class StoreUrl(str):
    """A store URL that holds a password: its ``repr`` (a config's, a store's, a traceback's
    locals) shows it masked. Use ``masked`` wherever it is shown."""

    __slots__ = ()

    @property
    def masked(self) -> str:
        return mask_password(self)

    def __repr__(self) -> str:
        return repr(self.masked)


def dialect_of(db: sqlite3.Connection | sqlite3.Cursor | Any) -> StoreKind:
    """Which engine a connection or cursor talks to, for the few statements written per dialect
    (a ``{StoreKind: sql}`` map beside the statement, in its projection's module)."""
    return StoreKind.SQLITE if isinstance(db, (sqlite3.Cursor, sqlite3.Connection)) else StoreKind.POSTGRES


def is_postgres_url(text: str) -> bool:
    return text.lower().startswith(POSTGRES_SCHEMES)


class AsyncReader(Protocol):
    """The read-only async connection the read pool and followers use (aiosqlite's subset)."""

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ...) -> Any: ...

    async def close(self) -> None: ...


class EventStore(Protocol):
    """One storage engine under the event log. Implementations keep no open connection of their
    own: ``EventLog`` owns the writer connection, callers own the readers they open."""

    kind: StoreKind

    @property
    def location(self) -> str:
        """Where the log lives, safe to print (a file path, or a URL with its password masked)."""
        ...

    @property
    def file(self) -> Path | None:
        """The database file for the file-only operations (backup, integrity check), else None."""
        ...

    def exists(self) -> bool:
        """Is there (possibly) a log to read? False for a SQLite file never created."""
        ...

    def open_writer(self, durability: str) -> sqlite3.Connection:
        """Create or open the log (schema checked or created) and return the writer connection,
        outside any transaction, ready for ``begin_write``."""
        ...

    def forget_unwritten(self) -> None:
        """Undo what ``open_writer`` created if the open failed before anything was written."""
        ...

    def begin_write(self, conn: sqlite3.Connection) -> None:
        """Begin the write transaction of one batch, holding the log's single write lock: from here
        to commit no other appender (any process) reads the head, so positions stay gap-free and
        the chain linear."""
        ...

    def reopen_writer(self, conn: sqlite3.Connection, durability: str) -> sqlite3.Connection:
        """After a storage error: the writer connection for the next batch. SQLite's file
        connection survives (the same one); a server connection that broke is replaced when a
        new one can be opened (else the old one, and the next batch tries again)."""
        ...

    def announce_append(self, conn: sqlite3.Connection) -> None:
        """In the write transaction of a batch that appended, just before its commit: tell the
        other processes on the log (PostgreSQL: NOTIFY, delivered at the commit; SQLite: nothing,
        its followers poll). Once per batch, however many events it appended."""
        ...

    def recover_failed_statement(self, conn: sqlite3.Connection) -> None:
        """Make the write transaction usable again after a statement of the running unit failed
        and the unit goes on (to say why). SQLite undid the statement alone; PostgreSQL aborted
        the transaction up to the unit's savepoint (``UNIT_SAVEPOINT``)."""
        ...

    def close_writer(self, conn: sqlite3.Connection) -> None:
        """What a clean stop leaves behind (SQLite: everything checkpointed into the file)."""
        ...

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection that never blocks the writer."""
        ...

    def connect_async(self) -> Any:
        """An unopened async read-only connection (await it to open it; an ``AsyncReader``)."""
        ...

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """The engine's exception types (``except store.errors``: any failure of the database)."""
        ...

    def is_storage_error(self, exc: BaseException) -> bool:
        """Did this fail because the log could not be written (the same work may succeed later)?"""
        ...

    def is_conflict(self, exc: BaseException) -> bool:
        """Is this a uniqueness violation (an event id or a stream version already taken)?"""
        ...

    def spoils_connection(self, exc: BaseException) -> bool:
        """Does this error leave a read connection unfit for the next read?"""
        ...


T = TypeVar("T")


def read_with(store: EventStore, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` on a fresh read-only connection to ``store``, closed after; the store's errors
    (``store.errors``) are the caller's to report."""
    conn = store.reader()
    try:
        return fn(conn)
    finally:
        conn.close()


class NotAFileStore(RuntimeError):
    """A command that works on the SQLite file itself, asked of a store that has none."""

    def __init__(self, verb: str, instead: str) -> None:
        super().__init__(f"{verb}: not supported with state.url yet; {instead}")


def require_file(store: EventStore, verb: str, instead: str) -> Path:
    """The store's SQLite file, or ``NotAFileStore`` naming the verb and what to do instead."""
    file = store.file
    if file is None:
        raise NotAFileStore(verb, instead)
    return file


def open_store(where: str | Path) -> EventStore:
    """The store for a ``state.path`` (a file path) or a ``state.url`` (``postgresql://…``)."""
    if isinstance(where, str) and is_postgres_url(where):
        from ductile.events.postgres_store import PostgresStore

        return PostgresStore(where)
    from ductile.events.sqlite_store import SqliteStore

    return SqliteStore(Path(where))


def is_database_error(exc: BaseException) -> bool:
    """Is this an error of a store's engine (any failure of the database, not of our code)?"""
    if isinstance(exc, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def is_storage_error(exc: BaseException) -> bool:
    """Did an append fail because the log could not be written (disk full, read-only, I/O, the
    server gone)? Such a failure rolls the whole batch back; the caller may submit the same work
    again. Asks each engine whose errors can exist in this process."""
    from ductile.events.sqlite_store import is_sqlite_storage_error

    if is_sqlite_storage_error(exc):
        return True
    if "psycopg" in sys.modules:  # a psycopg error cannot exist before psycopg was imported
        from ductile.events.postgres_store import is_postgres_storage_error

        return is_postgres_storage_error(exc)
    return False
