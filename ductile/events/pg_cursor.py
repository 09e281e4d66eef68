"""A sqlite3-like connection and cursor over psycopg 3, for the PostgreSQL event store (issue 17).

The projections, the log and the readers are written against ``sqlite3.Connection``/``Cursor``;
``PgConnection``/``PgCursor`` offer the subset they use, so the same handler runs on either
store. Every statement goes through ``sql_dialect.to_postgres`` (``UntranslatableSQL`` when it
has no safe PostgreSQL form). Only a PostgreSQL store imports this module: the SQLite default
never imports psycopg.

What is made to look like SQLite:

- transactions as Ductile opens SQLite (``isolation_level=None``): autocommit until the code
  sends ``BEGIN``, then ``COMMIT``/``ROLLBACK`` (or ``commit()``/``rollback()``) ends it;
- rows are tuples; ``fetchone``/``fetchall``/iteration after a statement that returns no rows
  give ``None``/``[]``/nothing, as sqlite3 does (psycopg raises);
- ``description`` holds sqlite3's 7-tuples (the name, then six ``None``);
- numbers: PostgreSQL answers ``SUM``/``AVG`` over BIGINT with NUMERIC, which psycopg turns
  into ``Decimal``. A NUMERIC loader registered on the connection returns an ``int`` for an
  integral value and a ``float`` otherwise, as SQLite's SUM and AVG do; a boolean result (``a = b``
  in a select list) comes back as 0/1, and a Python ``bool`` parameter is sent as 0/1, since
  SQLite has no boolean type and our tables store flags as integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import psycopg
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import TransactionStatus

from ductile.events.sql_dialect import to_postgres

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]
# sqlite3's description entry: the column name and six Nones (DB-API fields SQLite never fills).
Description = tuple[tuple[str, None, None, None, None, None, None], ...]


class _SqliteNumeric(Loader):
    """NUMERIC as SQLite would have answered: an ``int`` when integral, else a ``float``."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data)
        if text.lstrip(b"-").isdigit():
            return int(text)
        return float(text)  # "1.50", "NaN", "Infinity"


class _SqliteBoolean(Loader):
    def load(self, data: Buffer) -> int:
        return 1 if bytes(data) == b"t" else 0


class _BoolAsInteger(Dumper):
    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> Buffer:
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection[Row]) -> None:
    conn.adapters.register_loader("numeric", _SqliteNumeric)
    conn.adapters.register_loader("bool", _SqliteBoolean)
    conn.adapters.register_dumper(bool, _BoolAsInteger)


_ENDS_A_TRANSACTION = frozenset({"COMMIT", "END", "COMMIT TRANSACTION", "END TRANSACTION"})


def _failed_commit() -> psycopg.errors.InFailedSqlTransaction:
    return psycopg.errors.InFailedSqlTransaction(
        "COMMIT of a transaction in which a statement failed: nothing was committed; roll it back")


class PgCursor:
    """The part of ``sqlite3.Cursor`` Ductile uses, over a psycopg cursor."""

    def __init__(self, connection: PgConnection, cursor: psycopg.Cursor[Row]) -> None:
        self.connection = connection
        self._cur = cursor

    def execute(self, sql: str, params: Params = ()) -> Self:
        if self.connection.failed and sql.strip().upper() in _ENDS_A_TRANSACTION:
            # PostgreSQL answers COMMIT of a failed transaction with a silent ROLLBACK.
            raise _failed_commit()
        # Always a parameter sequence, () included: psycopg then reads the %% the translation wrote.
        self._cur.execute(to_postgres(sql), params)  # type: ignore[arg-type]
        return self

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Self:
        self._cur.executemany(to_postgres(sql), seq_of_params)  # type: ignore[arg-type]
        return self

    def fetchone(self) -> Row | None:
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchmany(self, size: int = 1) -> list[Row]:
        return self._cur.fetchmany(size) if self._cur.description is not None else []

    def fetchall(self) -> list[Row]:
        return self._cur.fetchall() if self._cur.description is not None else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self._cur) if self._cur.description is not None else iter(())

    @property
    def description(self) -> Description | None:
        columns = self._cur.description
        if columns is None:
            return None
        return tuple((c.name, None, None, None, None, None, None) for c in columns)

    @property
    def rowcount(self) -> int:
        """Rows changed by the last INSERT/UPDATE/DELETE; -1 after a SELECT, as in sqlite3."""
        return -1 if self._cur.description is not None else self._cur.rowcount

    def close(self) -> None:
        self._cur.close()


class PgConnection:
    """The part of ``sqlite3.Connection`` Ductile uses, over one psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        if not conn.autocommit:
            raise ValueError("PgConnection needs an autocommit psycopg connection (transactions are explicit)")
        _configure(conn)
        self.raw = conn  # for what only PostgreSQL has (LISTEN/NOTIFY, COPY)

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> PgConnection:
        return cls(psycopg.connect(url, autocommit=True, **kwargs))

    def cursor(self) -> PgCursor:
        return PgCursor(self, self.raw.cursor())

    def execute(self, sql: str, params: Params = ()) -> PgCursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> PgCursor:
        return self.cursor().executemany(sql, seq_of_params)

    @property
    def in_transaction(self) -> bool:
        """True from ``BEGIN`` until ``COMMIT``/``ROLLBACK``, a failed transaction included."""
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def failed(self) -> bool:
        """A statement of the open transaction failed: only ROLLBACK is possible now."""
        return self.raw.info.transaction_status == TransactionStatus.INERROR

    def commit(self) -> None:
        if self.failed:
            raise _failed_commit()
        if self.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()
