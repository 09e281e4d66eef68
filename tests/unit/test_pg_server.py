"""The throwaway PostgreSQL server the suite starts (tests/pg_server.py): each test gets its own
empty database, reachable by the URL the code under test is given."""

from __future__ import annotations

import psycopg
import pytest

from tests import pg_server as pg_server_module
from tests.pg_server import PgServer, PostgresUnavailable


def test_a_test_database_accepts_tables_and_rows(pg_url: str) -> None:
    assert pg_url.startswith("postgresql://")
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO t VALUES (%s, %s)", (1, "one"))
        conn.commit()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT id, name FROM t").fetchall() == [(1, "one")]


def test_two_test_databases_do_not_see_each_others_tables(pg_server: PgServer) -> None:
    with pg_server.fresh_database() as first, pg_server.fresh_database() as second:
        assert first != second
        with psycopg.connect(first, autocommit=True) as conn:
            conn.execute("CREATE TABLE only_here (x INT)")
        with psycopg.connect(second, autocommit=True) as conn, pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT x FROM only_here")


def test_a_test_database_is_dropped_after_its_test_even_with_a_connection_left_open(pg_server: PgServer) -> None:
    with pg_server.fresh_database() as url:
        leaked = psycopg.connect(url)
        name = leaked.info.dbname
    with psycopg.connect(pg_server.socket_url(), autocommit=True) as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
    leaked.close()


def test_the_server_runs_for_speed_not_durability(pg_server: PgServer) -> None:
    with psycopg.connect(pg_server.socket_url()) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_no_server_binaries_is_an_error_that_says_how_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_server_module, "find_bin_dir", lambda: None)
    with pytest.raises(PostgresUnavailable, match="DUCTILE_TEST_POSTGRES=skip"):
        pg_server_module.start_server()
