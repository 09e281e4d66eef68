"""The PostgreSQL event store (``state.url: postgresql://…``).

The same ``EventLog`` runs on it: statements are written in SQLite's dialect and translated by
``sql_dialect.to_postgres`` through ``pg_cursor.PgConnection`` (the sqlite3 subset our code uses).
What PostgreSQL needs of its own is here:

* **One writer at a time, across processes.** PostgreSQL has no database write lock. Each write
  transaction begins by locking one row (``ductile_meta`` key ``writer``) ``FOR UPDATE``; the next
  appender, in this process or another, waits on that row until the commit. Under READ COMMITTED
  every later statement of the transaction sees what the previous holder committed, so the head
  read after the lock is the true head: positions stay gap-free and the chain linear. Several
  gateway nodes (next round) append the same way.
* **Readers** run each transaction REPEATABLE READ and READ ONLY: ``read_snapshot``'s promise
  (every read inside sees one state) holds as on SQLite's WAL snapshot.
* **Durability** ``normal`` is ``synchronous_commit = off`` (a crash may lose the last commits,
  never corrupt), ``full`` the server's default.
* **Follow**: in-process commits wake followers at once, other processes' within the poll interval
  (as on SQLite); LISTEN/NOTIFY between nodes is the next round's.

psycopg is imported only when a connection is opened (``pg_connections``), so a config naming a
``state.url`` loads, and its password stays masked, on a machine without the ``postgres`` extra.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from ductile.events.store import UNIT_SAVEPOINT, StoreKind, StoreUrl, log_line

if TYPE_CHECKING:
    from ductile.events.pg_connections import PgAsyncReader

# SQLSTATE classes that mean the server, not the work, failed: connection exceptions (08),
# insufficient resources (53: disk full, out of memory, too many connections), operator
# intervention (57: admin shutdown, cannot connect now), system errors (58: I/O).
_STORAGE_CLASSES = frozenset({"08", "53", "57", "58"})
_READ_ONLY_TRANSACTION = "25006"  # the server is a read-only standby, or was made read-only


# Tables beside the log that hold live operational state, not history: the node leases of several
# gateway nodes (pg_nodes.py). No replay produces them, so selfcheck's schema check passes them over.
OPERATIONAL_TABLES = ("ductile_nodes",)
APPEND_CHANNEL = "ductile_log"  # NOTIFYed by each write transaction that appended (announce_append)


class PostgresUnavailable(RuntimeError):
    """psycopg is not installed, or the server could not be reached (the message masks the password)."""


def is_postgres_storage_error(exc: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        # No answer from the server at all: the connection broke (psycopg.OperationalError).
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in _STORAGE_CLASSES or state == _READ_ONLY_TRANSACTION


class PostgresStore:
    """The log in a PostgreSQL database (``EventStore``)."""

    kind = StoreKind.POSTGRES

    def __init__(self, url: str) -> None:
        self.url = StoreUrl(url)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.masked!r})"

    @property
    def location(self) -> str:
        return self.url.masked

    @property
    def file(self) -> None:
        return None

    def exists(self) -> bool:
        # The server holds the log; a database that cannot be reached fails with its reason at open.
        return True

    def _connections(self) -> Any:
        try:
            from ductile.events import pg_connections
        except ImportError as exc:
            raise PostgresUnavailable(
                f"state.url needs psycopg (pip install 'ductile[postgres]'): {exc}") from None
        return pg_connections

    def open_writer(self, durability: str) -> sqlite3.Connection:
        return self._connections().open_writer(self.url, durability)  # type: ignore[no-any-return]

    def forget_unwritten(self) -> None:
        pass  # a database is created by its operator, not by an open

    def begin_write(self, conn: sqlite3.Connection) -> None:
        self._connections().begin_write(conn)

    def reopen_writer(self, conn: sqlite3.Connection, durability: str) -> sqlite3.Connection:
        if not conn.raw.closed:  # type: ignore[attr-defined]  # the server refused the batch; the link is fine
            return conn
        try:
            fresh = self.open_writer(durability)
        except Exception as exc:
            # The server is still away: the outage was reported once (EventLog._storage_failed);
            # the next batch tries again.
            log_line(logging.DEBUG, "event store reconnect failed", exc, store=self.location)
            return conn
        conn.close()
        log_line(logging.INFO, "event store reconnected", store=self.location)
        return fresh

    def announce_append(self, conn: sqlite3.Connection) -> None:
        # Several nodes: every node LISTENs (pg_nodes.Listener). Once per batch, not a trigger per
        # insert, which cost 35-50 µs on each event's INSERT.
        conn.execute(f"NOTIFY {APPEND_CHANNEL}")

    def recover_failed_statement(self, conn: sqlite3.Connection) -> None:
        # The unit is refused anyway (the caller raises next), so undoing the rest of it now is
        # what the writer's own ROLLBACK TO would do a moment later.
        conn.execute(f"ROLLBACK TO {UNIT_SAVEPOINT}")

    def close_writer(self, conn: sqlite3.Connection) -> None:
        conn.close()  # every commit is already in the server's WAL; nothing to move

    def work_connection(self) -> sqlite3.Connection:
        """A writable connection outside the log's writer, for work whose transaction is always
        rolled back (selfcheck's replay folds into a private schema)."""
        return self._connections().open_work(self.url)  # type: ignore[no-any-return]

    def reader(self) -> sqlite3.Connection:
        return self._connections().open_reader(self.url)  # type: ignore[no-any-return]

    def connect_async(self) -> PgAsyncReader:
        return self._connections().PgAsyncReader(self.url)  # type: ignore[no-any-return]

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return self._connections().ERRORS  # type: ignore[no-any-return]

    def is_storage_error(self, exc: BaseException) -> bool:
        return is_postgres_storage_error(exc)

    def is_conflict(self, exc: BaseException) -> bool:
        psycopg = sys.modules.get("psycopg")
        return psycopg is not None and isinstance(exc, psycopg.errors.UniqueViolation)

    def spoils_connection(self, exc: BaseException) -> bool:
        # A broken connection stays broken; a statement that failed leaves an autocommit reader
        # as it was (its transaction, if any, is rolled back by the caller's read_snapshot).
        psycopg = sys.modules.get("psycopg")
        return psycopg is not None and isinstance(exc, psycopg.OperationalError)
