"""The fast fold: replay the whole log into fresh projection tables held in SQLite's TEMP schema.

One home for `system rebuild` (``ProjectionRunner.rebuild``, which then copies the folded rows out)
and selfcheck's ``projection_replay`` (``replay.replay_and_compare``, which compares them with the
stored ones). The live handlers run unchanged, so the fold is correct by construction:

* SQLite resolves an unqualified table name in ``temp`` before ``main`` and attached databases, so
  with a projection's tables created as ``temp.<table>`` its handlers write there without knowing.
* The TEMP database has no WAL, no fsync and no checkpoint; it lives in the page cache
  (``FOLD_CACHE_KIB``) and spills to a temporary file beyond that, so a log of millions of events
  never has to fit in memory. Every intermediate state of a row is written there, not to the
  state DB: the state DB then receives each final row once, in one ``INSERT … SELECT`` per table,
  with its indexes built after (``copy_out``).
* The whole fold is one transaction (the caller's), so it reads one snapshot of the log.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ductile.events.record import from_row
from ductile.projections.projection import Handler, Projection

FOLDED = "temp"  # the schema the fold writes: searched first for an unqualified name
FOLD_CHUNK = 5000  # events read and decoded per query
FOLD_CACHE_KIB = 256 * 1024  # the TEMP database's page cache; beyond it, pages spill to a temp file

Progress = Callable[[int, int], None]

_CREATE_PREFIXES = ("CREATE TABLE IF NOT EXISTS ", "CREATE INDEX IF NOT EXISTS ", "CREATE UNIQUE INDEX IF NOT EXISTS ")


def qualified(statement: str, schema: str) -> str:
    """``statement`` (one CREATE … IF NOT EXISTS of a schema) creating its object in ``schema``.

    An unqualified CREATE … IF NOT EXISTS would target ``main`` and could see (and skip for) a
    table of the same name there; an index must live in its table's schema."""
    text = _without_leading_comments(statement)
    for prefix in _CREATE_PREFIXES:
        if text.upper().startswith(prefix):
            return f"{text[:len(prefix)]}{schema}.{text[len(prefix):].lstrip()}"
    raise ValueError(f"not a CREATE … IF NOT EXISTS statement: {text[:60]!r}")


def _without_leading_comments(statement: str) -> str:
    lines = statement.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def statements(ddl: str) -> list[str]:
    """The statements of ``ddl`` (a projection's schema), leading comment lines dropped."""
    return [text for text in map(_without_leading_comments, ddl.split(";")) if text]


def is_index(statement: str) -> bool:
    return statement.strip().upper().startswith(("CREATE INDEX", "CREATE UNIQUE INDEX"))


@dataclass
class FoldResult:
    """Where the fold stopped and, per projection, the events its handlers took and their time."""

    position: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    spent_ns: dict[str, int] = field(default_factory=dict)


def fold_log(
    conn: sqlite3.Connection,
    projections: Sequence[Projection],
    *,
    events_schema: str = "main",
    progress: Progress | None = None,
) -> FoldResult:
    """Create ``projections``' tables in ``temp`` and fold every event of ``events_schema``.events
    into them with the projections' own handlers. Runs inside the caller's transaction."""
    cur = conn.cursor()
    cur.execute(f"PRAGMA {FOLDED}.cache_size = -{FOLD_CACHE_KIB}")
    for p in projections:
        for table in p.tables:
            cur.execute(f"DROP TABLE IF EXISTS {FOLDED}.{table}")
        for statement in statements(p.schema):
            cur.execute(qualified(statement, FOLDED))
    # One lookup per event: the (projection name, handlers) that take its type, in projection order.
    dispatch: dict[type, list[tuple[str, list[Handler]]]] = {}
    for p in projections:
        for event_type, fns in p.handlers.items():
            dispatch.setdefault(event_type, []).append((p.name, fns))
    result = FoldResult(applied={p.name: 0 for p in projections}, spent_ns={p.name: 0 for p in projections})
    applied, spent = result.applied, result.spent_ns
    head = cur.execute(f"SELECT COALESCE(MAX(position), 0) FROM {events_schema}.events").fetchone()[0]
    sql = (f"SELECT position, event_id, stream, version, type, schema, recorded_at, data, chain"
           f" FROM {events_schema}.events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?")
    clock = time.perf_counter_ns
    position = 0
    while position < head:
        rows = cur.execute(sql, (position, head, FOLD_CHUNK)).fetchall()
        if not rows:
            break
        for rec in map(from_row, rows):
            takers = dispatch.get(type(rec.event))
            if not takers:
                continue
            event = rec.event
            for name, fns in takers:
                # The projections share one pass over the log, so each one's time is its own handlers'.
                begun = clock()
                for fn in fns:
                    fn(cur, event, rec)
                spent[name] += clock() - begun
                applied[name] += 1
        position = rows[-1][0]
        if progress is not None:
            progress(position, head)
    result.position = position
    return result


def copy_out(conn: sqlite3.Connection, p: Projection) -> int:
    """Replace ``p``'s tables in ``main`` by the folded ones in ``temp``: each final row written
    once, indexes built after the rows are in. Runs inside the caller's write transaction;
    returns the nanoseconds it took (part of ``p``'s rebuild time)."""
    begun = time.perf_counter_ns()
    cur = conn.cursor()
    for table in p.tables:
        cur.execute(f"DROP TABLE IF EXISTS main.{table}")
    ddl = statements(p.schema)
    for statement in ddl:
        if not is_index(statement):
            cur.execute(qualified(statement, "main"))
    for table in p.tables:
        cur.execute(f"INSERT INTO main.{table} SELECT * FROM {FOLDED}.{table}")
    for statement in ddl:
        if is_index(statement):
            cur.execute(qualified(statement, "main"))
    return time.perf_counter_ns() - begun


def drop_folded(conn: sqlite3.Connection, projections: Sequence[Projection]) -> None:
    """Free the TEMP tables (the connection may live on: the daemon's catch-up)."""
    for p in projections:
        for table in p.tables:
            conn.execute(f"DROP TABLE IF EXISTS {FOLDED}.{table}")
