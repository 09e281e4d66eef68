"""Selfcheck's ``projection_replay`` and ``db_schema`` on a PostgreSQL store (issue 17).

The same fold as on SQLite (``fold.fold_log``, the live handlers), in PostgreSQL's own dialect:
inside one REPEATABLE READ transaction (one snapshot of the log and of the stored projections,
whatever a running gateway commits meanwhile), a private schema is created, put alone on the
``search_path`` so the fold's unqualified tables land there, the live log is read from the store's
own schema, and each replayed table is compared with the stored one (``EXCEPT ALL`` both ways). The
transaction is rolled back: the private schema never becomes visible and nothing is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from ductile.events.postgres_store import OPERATIONAL_TABLES
from ductile.projections.fold import fold_log, qualified, statements
from ductile.projections.projection import Projection
from ductile.projections.replay import ReplayReport, checkpoints_behind, stale_versions, stored_projections

Progress = Callable[[int, int], None]

_REPLAY_SCHEMA = "ductile_replay"
_COLUMNS_SQL = ("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?"
                " ORDER BY ordinal_position")
_TABLES_SQL = "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
_INDEXES_SQL = "SELECT indexname, tablename FROM pg_indexes WHERE schemaname = ?"


def _private_schema(conn: sqlite3.Connection) -> str:
    """Begin the snapshot, make the private schema the only one unqualified names reach, and
    return the live schema's name."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    live: str = conn.execute("SELECT current_schema()").fetchone()[0]
    conn.execute(f"CREATE SCHEMA {_REPLAY_SCHEMA}")
    conn.execute(f"SET LOCAL search_path TO {_REPLAY_SCHEMA}")
    return live


def replay_and_compare(
    conn: sqlite3.Connection, projections: Sequence[Projection], progress: Progress | None = None
) -> ReplayReport:
    """``replay.replay_and_compare`` on a PostgreSQL store; ``conn`` is a writable connection
    outside any transaction (the fold creates its tables in the private schema)."""
    try:
        live = _private_schema(conn)
        head = conn.execute(f"SELECT COALESCE(MAX(position), 0) FROM {live}.events").fetchone()[0]
        stored = stored_projections(conn, live)
        built = {t for (t,) in conn.execute(_TABLES_SQL, (live,)).fetchall()}
        pending = {**stale_versions(stored, projections),
                   **{p.name: f"{p.name}: not stored yet, built at the next start ({p.version})"
                      for p in projections if p.name not in stored and not built.intersection(p.tables)}}
        behind = checkpoints_behind(stored, [p for p in projections if p.name not in pending], head)
        if behind:
            return ReplayReport(ok=False, detail=f"checkpoints not at head {head}: " + ", ".join(behind))
        position = fold_log(conn, projections, events_schema=live, progress=progress).position
        for p in projections:
            if p.name in pending:
                continue
            for table in p.tables:
                difference = _first_difference(conn, live, table)
                if difference is not None:
                    return ReplayReport(ok=False, detail=f"{p.name}: {difference}", events=position)
        summary = f"{position} events replayed, {len(projections) - len(pending)} projections identical"
        return ReplayReport(ok=True, detail="; ".join([summary, *pending.values()]), events=position)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [c for (c,) in conn.execute(_COLUMNS_SQL, (schema, table)).fetchall()]


def _first_difference(conn: sqlite3.Connection, live: str, table: str) -> str | None:
    replayed, stored = _columns(conn, _REPLAY_SCHEMA, table), _columns(conn, live, table)
    if replayed != stored:
        return f"table {table} has columns {stored}, expected {replayed}"
    for first, second, missing in ((live, _REPLAY_SCHEMA, "not produced by the replay"),
                                   (_REPLAY_SCHEMA, live, "missing from the stored projection")):
        row = conn.execute(
            f"SELECT * FROM {first}.{table} EXCEPT ALL SELECT * FROM {second}.{table} LIMIT 1").fetchone()
        if row is not None:
            shown = ", ".join(f"{c}={v!r}" for c, v in zip(replayed, row, strict=True))[:200]
            return f"table {table}, row ({shown}): {missing}"
    return None


def schema_differences(conn: sqlite3.Connection, baseline_ddl: str, projections: Sequence[Projection],
                       skip: Sequence[str] = ()) -> list[str]:
    """``replay.schema_differences`` on PostgreSQL: the tables, their columns and the indexes of the
    log and of ``projections``, created in the private schema, against the stored ones."""
    try:
        live = _private_schema(conn)
        for statement in [*statements(baseline_ddl), *(s for p in projections for s in statements(p.schema))]:
            conn.execute(qualified(statement, "main"))
        skipped = {t for p in projections if p.name in skip for t in p.tables} | set(OPERATIONAL_TABLES)
        out: list[str] = []
        expected = {t for (t,) in conn.execute(_TABLES_SQL, (_REPLAY_SCHEMA,)).fetchall()} - skipped
        found = {t for (t,) in conn.execute(_TABLES_SQL, (live,)).fetchall()} - skipped
        out += [f"missing table {t}" for t in sorted(expected - found)]
        out += [f"unexpected table {t}" for t in sorted(found - expected)]
        out += [f"table {t} differs from the baseline" for t in sorted(expected & found)
                if _columns(conn, _REPLAY_SCHEMA, t) != _columns(conn, live, t)]
        want = {i for i, t in conn.execute(_INDEXES_SQL, (_REPLAY_SCHEMA,)).fetchall() if t not in skipped}
        have = {i for i, t in conn.execute(_INDEXES_SQL, (live,)).fetchall() if t not in skipped}
        out += [f"missing index {i}" for i in sorted(want - have)]
        out += [f"unexpected index {i}" for i in sorted(have - want)]
        return out
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
