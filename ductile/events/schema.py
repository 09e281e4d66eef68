"""DDL of the event log and the checks that a state DB is one of ours.

The DDL is written once, in SQLite's dialect; the PostgreSQL store runs it translated
(``sql_dialect.to_postgres``). What differs is how each engine lists its tables (``tables``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

LOG_SCHEMA_VERSION = 1

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
  position    INTEGER PRIMARY KEY,
  event_id    BLOB    NOT NULL UNIQUE,
  stream      TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  type        TEXT    NOT NULL,
  schema      INTEGER NOT NULL,
  recorded_at INTEGER NOT NULL,
  data        BLOB    NOT NULL,
  chain       BLOB    NOT NULL,
  UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS ductile_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projections (
  name     TEXT PRIMARY KEY,
  version  INTEGER NOT NULL,
  position INTEGER NOT NULL
);
"""


class UnknownSchema(RuntimeError):
    pass


def has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' LIMIT 1").fetchone() is not None


def sqlite_tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def ensure_schema(
    conn: sqlite3.Connection, path: str, tables: Callable[[sqlite3.Connection], set[str]] = sqlite_tables
) -> None:
    """Create the log in an empty DB; refuse a DB that holds someone else's tables. ``tables``
    lists the database's tables (the engine's own catalogue)."""
    found = tables(conn)
    if found:
        if not {"events", "ductile_meta"} <= found:
            raise UnknownSchema(
                f"state database {path} has an unknown schema (no event log); refusing to modify it"
            )
        version = conn.execute("SELECT value FROM ductile_meta WHERE key='log_schema'").fetchone()
        if version is None or int(version[0]) > LOG_SCHEMA_VERSION:
            raise UnknownSchema(
                f"state database {path} has event log schema {version[0] if version else '?'}, "
                f"newer than this Ductile supports ({LOG_SCHEMA_VERSION})"
            )
        return
    # Not executescript(): it would commit the caller's transaction first.
    for statement in EVENTS_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(  # a new, empty database: no row to replace (the one form both dialects take)
        "INSERT INTO ductile_meta(key, value) VALUES ('log_schema', ?)",
        (str(LOG_SCHEMA_VERSION),),
    )


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """``PRAGMA integrity_check``'s lines; ``["ok"]`` for a sound file."""
    return [str(line) for (line,) in conn.execute("PRAGMA integrity_check").fetchall()]
