"""Replay the whole event log into fresh projections and compare them with the stored ones
(operations.md §5 ``projection_replay``), plus the checkpoint and schema reads selfcheck needs.

The replay is the fold `system rebuild` uses (``fold.fold_log``): on a private temporary database
(``sqlite3.connect("")``: page cache first, spilling to disk, so a log of millions of events never
has to fit in memory) with the live state DB ATTACHed read-only as ``live``, the same handlers
that build the projections live fold every event into fresh tables; everything happens
in one read transaction, so a running gateway's writes after the first read are invisible (a read
snapshot). Pruning is itself an event (``ProjectionsPruned``), so the replayed tables hold exactly
the stored rows: no table is exempt from the comparison. Checkpoints are not replayed: they must
equal the head.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from ductile.projections.fold import fold_log, qualified, statements
from ductile.projections.projection import Projection

Progress = Callable[[int, int], None]

class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """``ok`` with a summary, or the first difference: projection, table and key in ``detail``."""

    ok: bool
    detail: str
    events: int = 0


class StoredProjection(msgspec.Struct, frozen=True):
    name: str
    version: int
    position: int


def stored_projections(conn: sqlite3.Connection, schema: str = "main") -> dict[str, StoredProjection]:
    """The checkpoint rows of the state DB (``schema`` names it when ATTACHed), by projection name."""
    rows = conn.execute(f"SELECT name, version, position FROM {schema}.projections").fetchall()
    return {name: StoredProjection(name, version, position) for name, version, position in rows}


def stale_versions(stored: dict[str, StoredProjection], projections: Sequence[Projection]) -> dict[str, str]:
    """Projections stored at another version than this release's: the next start rebuilds them
    (operations.md §5 "After an upgrade"), so they are reported, not compared."""
    return {p.name: f"{p.name}: stored version {stored[p.name].version}, rebuilt at the next start ({p.version})"
            for p in projections if p.name in stored and stored[p.name].version != p.version}


def not_yet_built(conn: sqlite3.Connection, stored: dict[str, StoredProjection], projections: Sequence[Projection],
                  schema: str = "main") -> dict[str, str]:
    """Projections this release has that the database never stored (no checkpoint row and none of
    their tables): a database from an earlier release, before its first start on this one. The
    next start builds them from the log, so, like a stale version, they are reported, not compared.
    A checkpoint row without its tables, or tables without a row, is damage, not an upgrade."""
    present = {name for (name,) in conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")}
    return {p.name: f"{p.name}: not stored yet, built at the next start ({p.version})"
            for p in projections if p.name not in stored and not present.intersection(p.tables)}


def rebuilt_at_next_start(conn: sqlite3.Connection, stored: dict[str, StoredProjection],
                          projections: Sequence[Projection], schema: str = "main") -> dict[str, str]:
    """Every projection the next start rebuilds or builds (operations.md §5 "After an upgrade"),
    with the detail selfcheck shows for it."""
    return {**stale_versions(stored, projections), **not_yet_built(conn, stored, projections, schema)}


def checkpoints_behind(stored: dict[str, StoredProjection], projections: Sequence[Projection], head: int) -> list[str]:
    """``<name> at <position>`` for each projection whose checkpoint is not the head."""
    return [f"{p.name} at {stored[p.name].position if p.name in stored else 'missing'}"
            for p in projections if p.name not in stored or stored[p.name].position != head]


def replay_and_compare(
    state_path: Path, projections: Sequence[Projection], progress: Progress | None = None
) -> ReplayReport:
    """Fold every event of ``state_path``'s log into fresh ``projections`` and compare every row of
    every table with the stored ones. Opens the state DB read-only; writes nothing to it."""
    conn = sqlite3.connect("", uri=True, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS live", (state_path.resolve().as_uri() + "?mode=ro",))
        conn.execute("BEGIN")
        head = conn.execute("SELECT COALESCE(MAX(position), 0) FROM live.events").fetchone()[0]
        stored = stored_projections(conn, "live")
        pending = rebuilt_at_next_start(conn, stored, projections, "live")
        behind = checkpoints_behind(stored, [p for p in projections if p.name not in pending], head)
        if behind:
            return ReplayReport(ok=False, detail=f"checkpoints not at head {head}: " + ", ".join(behind))
        # The fold `system rebuild` uses: fresh tables in this private ``main``, the live log as input.
        position = fold_log(conn, projections, events_schema="live", progress=progress).position
        stale = pending
        for p in projections:
            if p.name in stale:
                continue
            for table in p.tables:
                difference = _first_difference(conn, table)
                if difference is not None:
                    return ReplayReport(ok=False, detail=f"{p.name}: {difference}", events=position)
        summary = f"{position} events replayed, {len(projections) - len(stale)} projections identical"
        return ReplayReport(ok=True, detail="; ".join([summary, *stale.values()]), events=position)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[tuple[str, int]]:
    """``(column, primary-key rank)`` of ``schema.table`` in declaration order."""
    return [(row[1], row[5]) for row in conn.execute(f"PRAGMA {schema}.table_info({table})").fetchall()]


def _first_difference(conn: sqlite3.Connection, table: str) -> str | None:
    """The first row (by primary key) that differs between the replayed and the stored table."""
    replayed, stored = _columns(conn, "main", table), _columns(conn, "live", table)
    if [c for c, _ in replayed] != [c for c, _ in stored]:
        return f"table {table} has columns {[c for c, _ in stored]}, expected {[c for c, _ in replayed]}"
    names = [c for c, _ in replayed]
    key = [c for c, rank in sorted(replayed, key=lambda c: c[1]) if rank > 0] or names
    order = ", ".join(f'"{c}"' for c in key)
    for first, second, missing in (("live", "main", "not produced by the replay"),
                                   ("main", "live", "missing from the stored projection")):
        row = conn.execute(
            f"SELECT * FROM (SELECT * FROM {first}.{table} EXCEPT SELECT * FROM {second}.{table})"
            f" ORDER BY {order} LIMIT 1"
        ).fetchone()
        if row is None:
            continue
        values = dict(zip(names, row, strict=True))
        where = " AND ".join(f'"{c}" IS ?' for c in key)
        other = conn.execute(f"SELECT * FROM {second}.{table} WHERE {where}", [values[c] for c in key]).fetchone()
        label = ", ".join(f"{c}={values[c]!r}" for c in key)
        if other is None:
            return f"table {table}, row ({label}): {missing}"
        column = next(n for n, a, b in zip(names, row, other, strict=True) if a != b)
        return f"table {table}, row ({label}): column {column} differs from the replay"
    return None


# --- db_schema: the stored tables against the embedded baseline ---------------------------------


def _shape(conn: sqlite3.Connection, schema: str) -> dict[tuple[str, str], str]:
    """``{(type, name): normalised DDL}`` of every table and index (SQLite's own excluded)."""
    rows = conn.execute(
        f"SELECT type, name, COALESCE(sql, '') FROM {schema}.sqlite_master"
        " WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {(kind, name): " ".join(sql.replace("IF NOT EXISTS ", "").split()) for kind, name, sql in rows}


def schema_differences(
    state_path: Path, baseline_ddl: str, projections: Sequence[Projection], skip: Sequence[str] = ()
) -> list[str]:
    """Every table and index of the log (``baseline_ddl``) and of ``projections`` that is missing,
    unexpected or different in the state DB. Tables of the projections named in ``skip`` (stored at
    another version: the next start rebuilds them) are not compared."""
    conn = sqlite3.connect("", uri=True, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS live", (state_path.resolve().as_uri() + "?mode=ro",))
        for statement in [*statements(baseline_ddl), *(s for p in projections for s in statements(p.schema))]:
            conn.execute(qualified(statement, "main"))
        expected, found = _shape(conn, "main"), _shape(conn, "live")
        skipped = {t for p in projections if p.name in skip for t in p.tables}
        tables_of = dict(conn.execute(
            "SELECT name, tbl_name FROM main.sqlite_master UNION SELECT name, tbl_name FROM live.sqlite_master"
        ).fetchall())
        out: list[str] = []
        for kind, name in sorted(expected.keys() | found.keys()):
            if tables_of.get(name) in skipped:
                continue
            if (kind, name) not in found:
                out.append(f"missing {kind} {name}")
            elif (kind, name) not in expected:
                out.append(f"unexpected {kind} {name}")
            elif expected[kind, name] != found[kind, name]:
                out.append(f"{kind} {name} differs from the baseline")
        return out
    finally:
        conn.close()
