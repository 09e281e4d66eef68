"""SQLite's SQL as PostgreSQL's (ductile/events/sql_dialect.py): each translation keeps the
statement's meaning, and what has no such translation is refused by name."""

from __future__ import annotations

import pytest

from ductile.events.sql_dialect import UntranslatableSQL, to_postgres

TRANSLATED = [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
    ("SELECT '?', \"?\" FROM t WHERE x = ?", "SELECT '?', \"?\" FROM t WHERE x = %s"),
    ("SELECT 'it''s ?' FROM t WHERE x = ?", "SELECT 'it''s ?' FROM t WHERE x = %s"),
    ("SELECT '100%', a % 2 FROM t", "SELECT '100%%', a %% 2 FROM t"),
    ("SELECT a FROM t WHERE p = :principal OR CAST(:principal AS TEXT) IS NULL",
     "SELECT a FROM t WHERE p = %(principal)s OR CAST(%(principal)s AS TEXT) IS NULL"),
    ("SELECT a::text FROM t", "SELECT a::text FROM t"),
    ("CREATE TABLE t (id INTEGER PRIMARY KEY, at_ns INTEGER NOT NULL, b BLOB, r REAL, n INT)",
     "CREATE TABLE t (id BIGINT PRIMARY KEY, at_ns BIGINT NOT NULL, b BYTEA, r DOUBLE PRECISION, n BIGINT)"),
    ("SELECT CAST(x AS INTEGER) FROM t", "SELECT CAST(x AS BIGINT) FROM t"),
    ("SELECT t.integer FROM t", "SELECT t.integer FROM t"),
    ("INSERT OR IGNORE INTO g(p, s) VALUES (?, ?)", "INSERT INTO g(p, s) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
    ("insert  or\n ignore into g(p) values (?) returning p",
     "insert  into g(p) values (%s) ON CONFLICT DO NOTHING RETURNING p"),
    ("INSERT INTO s(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
     "INSERT INTO s(k, v) VALUES (%s, %s) ON CONFLICT(k) DO UPDATE SET v=excluded.v"),
    ("SELECT a FROM t WHERE b IS ? AND c IS NOT ?",
     "SELECT a FROM t WHERE b IS NOT DISTINCT FROM %s AND c IS DISTINCT FROM %s"),
    ("SELECT a FROM t WHERE b IS NULL AND c IS NOT NULL AND d IS TRUE",
     "SELECT a FROM t WHERE b IS NULL AND c IS NOT NULL AND d IS TRUE"),
    ("SELECT a FROM t WHERE b == ?", "SELECT a FROM t WHERE b = %s"),
    ("SELECT ifnull(a, 0), instr(lower(b), ?) FROM t", "SELECT coalesce(a, 0), strpos(lower(b), %s) FROM t"),
    ("SELECT max(a), min(b), count(*) FROM t", "SELECT max(a), min(b), count(*) FROM t"),
    ("INSERT INTO main.projections(name) VALUES (?)", "INSERT INTO projections(name) VALUES (%s)"),
    ("SELECT `weird name`, [other] FROM t", 'SELECT "weird name", "other" FROM t'),
    ("SELECT a -- why? 100%\nFROM t /* a ? here */ WHERE b = ?", "SELECT a \nFROM t  WHERE b = %s"),
    ("BEGIN DEFERRED", "BEGIN"),
    ("BEGIN", "BEGIN"),
    ("SAVEPOINT unit", "SAVEPOINT unit"),
    ("CREATE TABLE t (a TEXT) STRICT", "CREATE TABLE t (a TEXT)"),
    ("CREATE TABLE a (x INTEGER); CREATE INDEX a_x ON a(x)", "CREATE TABLE a (x BIGINT); CREATE INDEX a_x ON a(x)"),
]


@pytest.mark.parametrize(("sqlite", "postgres"), TRANSLATED)
def test_a_statement_with_the_same_meaning_on_both_engines_is_translated(sqlite: str, postgres: str) -> None:
    assert to_postgres(sqlite) == postgres


REFUSED = [
    ("INSERT OR REPLACE INTO t(a) VALUES (?)", "INSERT OR REPLACE"),
    ("REPLACE INTO t(a) VALUES (?)", "REPLACE INTO"),
    ("UPDATE OR IGNORE t SET a = ?", "UPDATE OR IGNORE"),
    ("INSERT OR IGNORE INTO t(a) VALUES (?) ON CONFLICT(a) DO NOTHING", "its own ON CONFLICT"),
    ("SELECT json_extract(payload, '$.a') FROM t", "json_extract()"),
    ("SELECT strftime('%s', 'now')", "strftime()"),
    ("SELECT julianday(x) FROM t", "julianday()"),
    ("SELECT datetime(x, 'unixepoch') FROM t", "datetime()"),
    ("SELECT group_concat(a) FROM t", "group_concat()"),
    ("SELECT a FROM t WHERE b GLOB 'x*'", "GLOB"),
    ("SELECT a FROM t WHERE b LIKE 'x%'", "LIKE"),
    ("PRAGMA journal_mode = WAL", "PRAGMA"),
    ("pragma main.cache_size", "PRAGMA"),
    ("VACUUM INTO ?", "VACUUM"),
    ("BEGIN IMMEDIATE", "BEGIN IMMEDIATE"),
    ("SELECT rowid FROM t", "rowid"),
    ("SELECT a FROM t INDEXED BY t_a WHERE a = ?", "INDEXED BY"),
    ("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT)", "AUTOINCREMENT"),
    ("CREATE TABLE t (id TEXT PRIMARY KEY) WITHOUT ROWID", "WITHOUT ROWID"),
    ("SELECT max(a, b) FROM t", "max() with several arguments"),
    ("SELECT name FROM sqlite_master", "sqlite_master"),
    ("SELECT a FROM t WHERE b = ?1", "placeholder ?1"),
    ("SELECT a FROM t WHERE b = @b", "placeholder @b"),
    ("SELECT a FROM t WHERE b = ? AND c = :c", "positional and named"),
    ("SELECT X'00ff'", "blob literal"),
    ("SELECT a FROM t WHERE (:p IS NULL OR p = :p)", "placeholder tested with IS (:p IS"),
    ("SELECT a FROM t WHERE ? IS NOT NULL", "placeholder tested with IS"),
    ("SELECT 'unterminated", "unterminated string"),
    ("SELECT a FROM temp.t", "temp schema"),
]


@pytest.mark.parametrize(("sqlite", "construct"), REFUSED)
def test_a_sqlite_only_construct_is_refused_by_name(sqlite: str, construct: str) -> None:
    with pytest.raises(UntranslatableSQL) as refused:
        to_postgres(sqlite)
    assert construct in refused.value.construct
    assert "write this statement per dialect" in str(refused.value)
    assert refused.value.sql == sqlite


def test_a_word_that_only_looks_like_a_sqlite_construct_inside_a_literal_is_left_alone() -> None:
    sql = "SELECT 'PRAGMA rowid LIKE json_extract(x) INSERT OR REPLACE' FROM t WHERE \"like\" = ?"
    assert to_postgres(sql) == "SELECT 'PRAGMA rowid LIKE json_extract(x) INSERT OR REPLACE' FROM t WHERE \"like\" = %s"


def test_a_translation_is_computed_once_per_statement_text() -> None:
    sql = "SELECT a FROM cached_t WHERE b = ?"
    assert to_postgres(sql) is to_postgres(sql)
