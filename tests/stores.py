"""The conformance suite's stores (issue 17): one suite, run against every event store, the way
the eventsourcing library runs one recorder suite per backend.

A conftest that wants its tests run on both stores imports ``store_setup`` and ``store`` (and
calls ``parametrize_stores`` from its ``pytest_generate_tests``). A test that is about the SQLite
file itself (a PRAGMA, the WAL, the file's mode) is marked ``@pytest.mark.sqlite_only`` and runs on
SQLite alone, one about the server (a broken connection) ``postgres_only``; everything else runs
on both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest

from ductile.events.sqlite_store import SqliteStore
from ductile.events.store import EventStore, StoreKind

# (store, durability): SQLite under both durabilities, PostgreSQL with the server's durable commit.
SETUPS = ("sqlite-full", "sqlite-normal", "postgres-full")
SQLITE_SETUPS = tuple(s for s in SETUPS if s.startswith("sqlite"))


def parametrize_stores(metafunc: pytest.Metafunc, setups: tuple[str, ...] = SETUPS) -> None:
    if "store_setup" in metafunc.fixturenames:
        if metafunc.definition.get_closest_marker("sqlite_only") is not None:
            setups = SQLITE_SETUPS
        elif metafunc.definition.get_closest_marker("postgres_only") is not None:
            setups = tuple(s for s in SETUPS if s.startswith("postgres"))
        metafunc.parametrize("store_setup", setups)


@pytest.fixture
def store_kind(store_setup: str) -> StoreKind:
    return StoreKind(store_setup.split("-")[0])


@pytest.fixture
def durability(store_setup: str) -> str:
    return store_setup.split("-")[1]


@pytest.fixture
def store(store_kind: StoreKind, tmp_path: Path, request: pytest.FixtureRequest) -> EventStore:
    """An empty event store: a new SQLite file, or a fresh database on the test server."""
    if store_kind is StoreKind.SQLITE:
        return SqliteStore(tmp_path / "state.db")
    from ductile.events.postgres_store import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_url"))


def raw_connection(store: EventStore) -> Any:
    """A writable connection outside the log, autocommit, to tamper with stored rows (sqlite3's
    interface on both stores)."""
    if store.file is not None:
        return sqlite3.connect(store.file, isolation_level=None)
    from ductile.events.pg_cursor import PgConnection
    from ductile.events.postgres_store import PostgresStore

    assert isinstance(store, PostgresStore)
    return PgConnection.connect(store.url)


def table_names(conn: Any) -> set[str]:
    """The tables of the database ``conn`` (sqlite3's or PgConnection) is connected to."""
    from ductile.events.schema import sqlite_tables
    from ductile.events.store import dialect_of

    if dialect_of(conn) is StoreKind.SQLITE:
        return sqlite_tables(conn)
    from ductile.events.pg_connections import pg_tables

    return pg_tables(conn)


# --- one empty store per hypothesis example ----------------------------------------------------
# Hypothesis runs a test body many times inside one pytest test, so a property test asks for a
# factory: each call gives an empty store. On PostgreSQL that is one database per test process,
# emptied between examples (a schema dropped and made again costs far less than a database).

class FreshStore:
    """``fresh()``: an empty store of ``kind``, each call (a context manager)."""

    def __init__(self, kind: StoreKind, fresh: Callable[[], AbstractContextManager[EventStore]]) -> None:
        self.kind = kind
        self._fresh = fresh

    def __call__(self) -> AbstractContextManager[EventStore]:
        return self._fresh()

    def examples(self, sqlite: int) -> int:
        """How many hypothesis examples to run: ``sqlite`` on SQLite, a fifth on PostgreSQL, where
        each example's schema, statements and commits are round trips to a server (the SQL under
        test is the same; the SQLite run explores the space)."""
        return sqlite if self.kind is StoreKind.SQLITE else max(10, sqlite // 5)


@contextmanager
def fresh_sqlite_store() -> Iterator[EventStore]:
    with TemporaryDirectory(prefix="ductile-prop-") as tmp:
        yield SqliteStore(Path(tmp) / "state.db")


def emptied_postgres(url: str) -> Callable[[], AbstractContextManager[EventStore]]:
    from ductile.events.pg_connections import pg_tables
    from ductile.events.pg_cursor import PgConnection
    from ductile.events.postgres_store import PostgresStore

    @contextmanager
    def fresh() -> Iterator[EventStore]:
        admin = PgConnection.connect(url)
        try:
            # Every row goes, the tables stay (creating ~30 tables per example would dominate):
            # the log, the projections' rows, and their checkpoints back to 0, as a new database
            # would have them once opened.
            rows = sorted(pg_tables(admin) - {"ductile_meta", "projections"})
            if rows:
                admin.raw.execute(f"TRUNCATE {', '.join(rows)}")
            if "projections" in pg_tables(admin):
                admin.raw.execute("UPDATE projections SET position = 0")
        finally:
            admin.close()
        yield PostgresStore(url)

    return fresh


SQLITE_FRESH = FreshStore(StoreKind.SQLITE, fresh_sqlite_store)


@pytest.fixture(scope="session", params=[StoreKind.SQLITE, StoreKind.POSTGRES])
def fresh_store(request: pytest.FixtureRequest) -> Iterator[FreshStore]:
    """A factory of empty stores (see above), one parameter per store."""
    if request.param is StoreKind.SQLITE:
        yield SQLITE_FRESH
        return
    with request.getfixturevalue("pg_server").fresh_database() as url:
        yield FreshStore(StoreKind.POSTGRES, emptied_postgres(url))
