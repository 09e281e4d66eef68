"""The conformance suite's stores (issue 17): one suite, run against every event store, the way
the eventsourcing library runs one recorder suite per backend.

A conftest that wants its tests run on both stores imports ``store_setup`` and ``store`` (and
calls ``parametrize_stores`` from its ``pytest_generate_tests``). A test that is about the SQLite
file itself (a PRAGMA, the WAL, the file's mode) is marked ``@pytest.mark.sqlite_only`` and runs on
SQLite alone; everything else runs on both.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ductile.events.sqlite_store import SqliteStore
from ductile.events.store import EventStore, StoreKind

# (store, durability): SQLite under both durabilities, PostgreSQL with the server's durable commit.
SETUPS = ("sqlite-full", "sqlite-normal", "postgres-full")
SQLITE_SETUPS = tuple(s for s in SETUPS if s.startswith("sqlite"))


def parametrize_stores(metafunc: pytest.Metafunc, setups: tuple[str, ...] = SETUPS) -> None:
    if "store_setup" in metafunc.fixturenames:
        sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("store_setup", SQLITE_SETUPS if sqlite_only else setups)


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
