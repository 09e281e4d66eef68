"""PgConnection/PgCursor (ductile/events/pg_cursor.py) answer like sqlite3 does, against a real
PostgreSQL server, for the statements our projections and log write in SQLite's dialect."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ductile.events.pg_cursor import PgConnection
from ductile.events.sql_dialect import UntranslatableSQL

SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, at_ns INTEGER NOT NULL, blob BLOB, ratio REAL)"
ROWS = [(1, "one", 1_700_000_000_000_000_001, b"\x00\x01", 0.5), (2, "50%", 2, None, None), (3, None, 3, b"", 1.0)]


@pytest.fixture
def pg(pg_url: str) -> Iterator[PgConnection]:
    conn = PgConnection.connect(pg_url)
    conn.execute(SCHEMA)
    conn.executemany("INSERT INTO t(id, name, at_ns, blob, ratio) VALUES (?, ?, ?, ?, ?)", ROWS)
    yield conn
    conn.close()


@pytest.fixture
def lite() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(SCHEMA)
    conn.executemany("INSERT INTO t(id, name, at_ns, blob, ratio) VALUES (?, ?, ?, ?, ?)", ROWS)
    yield conn
    conn.close()


SAME_ANSWER = [
    ("SELECT id, name, at_ns, blob, ratio FROM t ORDER BY id", ()),
    ("SELECT count(*), sum(at_ns), sum(id), max(at_ns) FROM t", ()),
    ("SELECT avg(id), total_ids FROM (SELECT sum(id) AS total_ids, avg(id) AS avg_id FROM t) s, t GROUP BY total_ids", ()),
    ("SELECT name FROM t WHERE name = ? OR id = ?", ("50%", 3)),
    ("SELECT id FROM t WHERE name IS ? ORDER BY id", (None,)),
    ("SELECT id, name IS NULL, id = 1 FROM t ORDER BY id", ()),
    ("SELECT id FROM t WHERE (CAST(:who AS TEXT) IS NULL OR name = :who) ORDER BY id LIMIT :limit",
     {"who": "one", "limit": 5}),
    ("SELECT id FROM t WHERE (CAST(:who AS TEXT) IS NULL OR name = :who) ORDER BY id LIMIT :limit",
     {"who": None, "limit": 5}),
    ("SELECT coalesce(name, '?') FROM t ORDER BY id", ()),
    ("SELECT id FROM t WHERE instr(lower(coalesce(name, '')), ?) > 0", ("on",)),
]


@pytest.mark.parametrize(("sql", "params"), SAME_ANSWER, ids=[s for s, _ in SAME_ANSWER])
def test_a_query_answers_with_the_same_values_and_types_as_sqlite(
    pg: PgConnection, lite: sqlite3.Connection, sql: str, params: tuple[object, ...]
) -> None:
    got = pg.execute(sql, params).fetchall()
    want = lite.execute(sql, params).fetchall()
    assert got == want
    assert [[type(v) for v in row] for row in got] == [[type(v) for v in row] for row in want]


def test_sums_and_averages_over_bigint_are_int_and_float_not_decimal(pg: PgConnection) -> None:
    total, average = pg.execute("SELECT sum(at_ns), avg(id) FROM t").fetchone()  # type: ignore[misc]
    assert (total, average) == (1_700_000_000_000_000_006, 2.0)
    assert type(total) is int and type(average) is float and not isinstance(total, Decimal)


def test_execute_returns_the_cursor_so_fetchone_chains_and_iteration_yields_tuples(pg: PgConnection) -> None:
    cur = pg.cursor()
    assert cur.execute("SELECT name FROM t WHERE id = ?", (1,)).fetchone() == ("one",)
    assert cur.execute("SELECT name FROM t WHERE id = ?", (99,)).fetchone() is None
    assert list(cur.execute("SELECT id FROM t ORDER BY id")) == [(1,), (2,), (3,)]
    assert cur.description == (("id", None, None, None, None, None, None),)
    cur.close()


def test_a_statement_without_rows_fetches_nothing_and_counts_its_changes(pg: PgConnection) -> None:
    cur = pg.execute("UPDATE t SET name = ? WHERE id > ?", ("x", 1))
    assert (cur.rowcount, cur.description, cur.fetchone(), cur.fetchall(), list(cur)) == (2, None, None, [], [])
    assert pg.execute("SELECT id FROM t").rowcount == -1


def test_insert_or_ignore_skips_a_duplicate_like_sqlite(pg: PgConnection) -> None:
    pg.execute("INSERT OR IGNORE INTO t(id, name, at_ns) VALUES (?, ?, ?)", (1, "dup", 9))
    assert pg.execute("SELECT name FROM t WHERE id = 1").fetchone() == ("one",)


def test_a_bool_parameter_is_stored_as_an_integer(pg: PgConnection) -> None:
    pg.execute("INSERT INTO t(id, at_ns) VALUES (?, ?)", (4, True))
    assert pg.execute("SELECT at_ns FROM t WHERE id = 4").fetchone() == (1,)


def test_transactions_are_explicit_as_with_isolation_level_none(pg: PgConnection, pg_url: str) -> None:
    other = PgConnection.connect(pg_url)
    assert not pg.in_transaction
    pg.execute("BEGIN")
    pg.execute("SAVEPOINT unit")
    pg.execute("DELETE FROM t WHERE id = 1")
    pg.execute("ROLLBACK TO unit")
    pg.execute("DELETE FROM t WHERE id = 2")
    pg.execute("RELEASE unit")
    assert pg.in_transaction
    assert other.execute("SELECT count(*) FROM t").fetchone() == (3,)  # not yet committed
    pg.commit()
    assert not pg.in_transaction
    assert other.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (3,)]
    pg.execute("BEGIN")
    pg.execute("DELETE FROM t")
    pg.rollback()
    assert other.execute("SELECT count(*) FROM t").fetchone() == (2,)
    other.close()


def test_commit_after_a_failed_statement_raises_instead_of_rolling_back_silently(pg: PgConnection) -> None:
    pg.execute("BEGIN")
    pg.execute("DELETE FROM t WHERE id = 3")
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg.execute("INSERT INTO t(id, at_ns) VALUES (?, ?)", (1, 1))
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        pg.commit()
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        pg.execute("COMMIT")
    pg.rollback()
    assert pg.execute("SELECT count(*) FROM t").fetchone() == (3,)


def test_a_sqlite_only_statement_is_refused_before_it_reaches_the_server(pg: PgConnection) -> None:
    with pytest.raises(UntranslatableSQL, match="PRAGMA"):
        pg.execute("PRAGMA journal_mode = WAL")


def test_the_sqlite_quick_start_never_imports_psycopg() -> None:
    # A fresh interpreter: this test process imported psycopg for the fixtures.
    probe = ("import sys\nimport ductile.daemon, ductile.cli.main, ductile.events.log, ductile.events.sql_dialect\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, env=env)
    assert done.stdout.strip() == "[]"
