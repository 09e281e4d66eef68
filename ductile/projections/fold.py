"""The fast fold: replay the whole log into fresh projection tables in one transaction.

One home for `system rebuild` (``ProjectionRunner.rebuild``) and selfcheck's ``projection_replay``
(``replay.replay_and_compare``, which folds into a private database and compares). A projection
that offers a bulk fold (``Projection.bulk``) is folded, on SQLite, in memory and each of its final rows is
written once with ``executemany`` (a row pruned before the end is never written); the others run
their live handlers unchanged. Either way:

* The whole fold is one transaction (the caller's): it reads one snapshot of the log, an
  interrupted rebuild leaves the projections as they were, and there is one commit (one fsync)
  instead of one per chunk.
* The page cache is raised (``FOLD_CACHE_KIB``) for the fold, so every intermediate state of a row
  is written in memory; the database file (or its WAL) receives the final pages once, at commit.
  Beyond the cache, SQLite spills pages to the file: a log of millions of events never has to fit
  in memory.
* ``secure_delete`` is off for the fold: what it deletes or drops is a projection of the log.
* Secondary indexes (``CREATE INDEX``, which only the readers use) are built after the rows are
  in, one sort each, instead of being updated on every statement. Tables, primary keys and
  ``UNIQUE`` constraints exist from the start: handlers rely on them (upserts, conflicts).
"""

from __future__ import annotations

import gc
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ductile.events import sqlite_binds
from ductile.events.record import SELECT_COLUMNS, SLIM_COLUMNS, Recorded, from_row, from_slim_row
from ductile.events.store import StoreKind, dialect_of
from ductile.projections.projection import BulkFold, Handler, Projection

# Events read and decoded per query, and the fold's step: its bulk folds write (when over their
# limit) after each. Larger chunks make fewer, longer runs of reading the log and of writing each
# table: 50,000 against 5,000 ran the same instructions in ≈ 20% less CPU time on bench/rebuild.py's
# log, for ≈ 45 MB more memory per process (docs/performance-history.md, "Sixth round").
FOLD_CHUNK = 50_000
FOLD_CACHE_KIB = 256 * 1024  # the page cache during a fold; beyond it, pages spill to the file

Progress = Callable[[int, int], None]

_CREATE_PREFIXES = ("CREATE TABLE IF NOT EXISTS ", "CREATE INDEX IF NOT EXISTS ", "CREATE UNIQUE INDEX IF NOT EXISTS ")


def qualified(statement: str, schema: str) -> str:
    """``statement`` (one CREATE … IF NOT EXISTS of a schema) creating its object in ``schema``.

    An unqualified CREATE … IF NOT EXISTS would target ``main`` and could see (and skip for) a
    table of the same name there; an index must live in its table's schema."""
    text = _without_leading_comments(statement)
    for prefix in _CREATE_PREFIXES:  # matched on the upper-cased head; the text keeps its case
        if text.upper().startswith(prefix):
            return f"{text[:len(prefix)]}{schema}.{text[len(prefix):].lstrip()}"
    raise ValueError(f"not a CREATE … IF NOT EXISTS statement: {text[:60]!r}")


def _without_leading_comments(statement: str) -> str:
    # Only the head is trimmed: SQLite stores the rest (trailing newline included) in
    # sqlite_master, which must stay byte-identical to what the live path created.
    lines = statement.lstrip().splitlines(keepends=True)
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "".join(lines).lstrip()


def statements(ddl: str) -> list[str]:
    """The statements of ``ddl`` (a projection's schema), leading comment lines dropped."""
    return [text for text in map(_without_leading_comments, ddl.split(";")) if text.strip()]


def is_deferred_index(statement: str) -> bool:
    """A secondary index the fold builds after the rows (a UNIQUE one is a constraint: kept)."""
    return statement.strip().upper().startswith("CREATE INDEX")


@dataclass
class FoldResult:
    """Where the fold stopped and, per projection, the events it took and the time of its handlers
    (or bulk fold, writes included) plus its index builds."""

    position: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    spent_ns: dict[str, int] = field(default_factory=dict)


def fold_log(
    conn: sqlite3.Connection,
    projections: Sequence[Projection],
    *,
    events_schema: str = "main",
    progress: Progress | None = None,
    bulk: bool = True,
    head: int | None = None,
    taken_only: bool = False,
) -> FoldResult:
    """Drop and create ``projections``' tables in ``main`` and fold every event of
    ``events_schema``.events into them (with each projection's bulk fold where it has one and
    ``bulk`` is true, else its handlers), secondary indexes built after. Runs inside the caller's
    transaction (a write transaction on ``main``).

    ``head`` is the last position folded (default: the log's head in this transaction): two folds
    that share one (``fold_worker.py``, each in its own process) read the same events, since the
    log is append-only. ``taken_only`` reads only the events of types these projections take (no
    other is decoded): a fold of some projections whose other process reads every event, so an
    event nothing can decode still fails the rebuild."""
    cur = conn.cursor()
    sqlite = dialect_of(conn) is StoreKind.SQLITE
    with fold_pragmas(conn):
        for p in projections:
            for table in p.tables:
                cur.execute(f"DROP TABLE IF EXISTS main.{table}")
            for statement in statements(p.schema):
                if not is_deferred_index(statement):
                    cur.execute(qualified(statement, "main"))
        # The bulk folds' statements are SQLite's (INSERT OR REPLACE has no conflict target): on
        # PostgreSQL every projection folds through its live handlers, which speak both dialects.
        folds = {p.name: p.bulk() for p in projections if bulk and sqlite and p.bulk is not None}
        sqlite_binds.register()  # None and statuses bound without sqlite3's failed lookups
        with _collector_paused():
            result = _apply_all(cur, projections, folds, events_schema, progress, head, taken_only)
        build_indexes(cur, projections, result.spent_ns)
        return result


@contextmanager
def fold_pragmas(conn: sqlite3.Connection) -> Iterator[None]:
    """On SQLite, ``main``'s page cache raised to ``FOLD_CACHE_KIB`` and ``secure_delete`` off while
    a fold writes, both back as they were after (PostgreSQL's server sizes its own buffers)."""
    if dialect_of(conn) is not StoreKind.SQLITE:
        yield
        return
    cache = conn.execute("PRAGMA main.cache_size").fetchone()[0]
    secure_delete = conn.execute("PRAGMA main.secure_delete").fetchone()[0]
    conn.execute(f"PRAGMA main.cache_size = -{FOLD_CACHE_KIB}")
    # Debian's SQLite zeroes every deleted cell and freed page (8-12% of a rebuild's CPU). Whatever
    # the fold deletes or drops is a projection of the log, which keeps all of it anyway.
    conn.execute("PRAGMA main.secure_delete = 0")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA main.cache_size = {cache}")
        conn.execute(f"PRAGMA main.secure_delete = {secure_delete}")


def build_indexes(cur: sqlite3.Cursor, projections: Sequence[Projection], spent_ns: dict[str, int]) -> None:
    """Build ``projections``' secondary indexes in ``main`` (their tables filled), each one's time
    added to its projection's ``spent_ns``."""
    clock = time.perf_counter_ns
    for p in projections:
        begun = clock()
        for statement in statements(p.schema):
            if is_deferred_index(statement):
                cur.execute(qualified(statement, "main"))
        spent_ns[p.name] = spent_ns.get(p.name, 0) + clock() - begun


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the fold, back as it was after.

    A fold allocates millions of short-lived rows, records and tuples, freed by reference counting
    (it makes no cycles), and holds tens of thousands of rows: each collection the allocations
    trigger walks them all again, about a quarter of a rebuild's CPU (measured on bench/rebuild.py's
    log: 7.2 s with the collector, 5.1 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _apply_all(
    cur: sqlite3.Cursor, projections: Sequence[Projection], folds: dict[str, BulkFold], events_schema: str,
    progress: Progress | None, head: int | None, taken_only: bool,
) -> FoldResult:
    names = [p.name for p in projections]
    # A chunk is sorted into each projection's share, then each projection takes its share in log
    # order: a projection writes and reads only its own tables, so the order between two
    # projections never shows, and each one's time (its own, as the report says) costs two clock
    # reads a chunk instead of two per event. Per event type: each taker's share (its ``append``)
    # and its one handler.
    takers = [dict(folds[p.name].handlers) if p.name in folds else {t: _one(fns) for t, fns in p.handlers.items()}
              for p in projections]
    shares: list[list[tuple[Handler, Recorded]]] = [[] for _ in projections]
    dispatch: dict[type, list[tuple[Callable[[tuple[Handler, Recorded]], None], Handler]]] = {}
    for share, taken in zip(shares, takers, strict=True):
        for event_type, fn in taken.items():
            dispatch.setdefault(event_type, []).append((share.append, fn))
    # One projection (the rebuild process's own group, or a one-projection rebuild): no shares.
    single = takers[0].get if len(projections) == 1 else None
    result = FoldResult(applied={p.name: 0 for p in projections}, spent_ns={p.name: 0 for p in projections})
    applied, spent = result.applied, result.spent_ns
    if head is None:
        head = cur.execute(f"SELECT COALESCE(MAX(position), 0) FROM {events_schema}.events").fetchone()[0]
    # An event's ``type`` column is its class's name (``codec.type_name``), so the filter keeps
    # exactly the events the dispatch takes; SQLite skips the others before Python sees them.
    types = sorted(t.__name__ for t in dispatch) if taken_only else []
    only = f" AND type IN ({', '.join('?' * len(types))})" if taken_only else ""
    # Projections that read only a record's position and event (the ledger) get only those columns.
    slim = all(not p.reads_meta for p in projections)
    columns, decode = (SLIM_COLUMNS, from_slim_row) if slim else (SELECT_COLUMNS, from_row)
    sql = (f"SELECT {columns}"
           f" FROM {events_schema}.events WHERE position > ? AND position <= ?{only} ORDER BY position LIMIT ?")
    clock = time.perf_counter_ns
    position = 0
    no_takers: list[tuple[Callable[[tuple[Handler, Recorded]], None], Handler]] = []
    while position < head:
        rows = cur.execute(sql, (position, head, *types, FOLD_CHUNK)).fetchall()
        if not rows:
            break
        if single is not None:  # one projection: each event straight to its handler
            records = list(map(decode, rows))
            begun, taken = clock(), 0
            for rec in records:
                fn = single(type(rec.event))
                if fn is not None:
                    fn(cur, rec.event, rec)
                    taken += 1
            spent[names[0]] += clock() - begun
            applied[names[0]] += taken
        else:
            for rec in map(decode, rows):
                for append, fn in dispatch.get(type(rec.event), no_takers):
                    append((fn, rec))
            for name, share in zip(names, shares, strict=True):
                if not share:
                    continue
                begun = clock()
                for fn, rec in share:
                    fn(cur, rec.event, rec)
                spent[name] += clock() - begun
                applied[name] += len(share)
                share.clear()
        position = rows[-1][0]
        _flush(cur, folds, spent, final=False)
        if progress is not None:
            progress(position, head)
    _flush(cur, folds, spent, final=True)
    if progress is not None and position < head:  # the last events were of types not taken
        progress(head, head)
    # Positions are gap-free: every event up to ``head`` was read (or skipped as not taken).
    result.position = head
    return result


def _one(fns: list[Handler]) -> Handler:
    """One handler that runs ``fns`` in turn (most projections have one per event type)."""
    if len(fns) == 1:
        return fns[0]

    def each(cur: sqlite3.Cursor, event: object, rec: Recorded) -> None:
        for fn in fns:
            fn(cur, event, rec)

    return each


def _flush(cur: sqlite3.Cursor, folds: dict[str, BulkFold], spent: dict[str, int], *, final: bool) -> None:
    clock = time.perf_counter_ns
    for name, fold in folds.items():
        begun = clock()
        fold.flush(cur, final=final)
        spent[name] += clock() - begun
