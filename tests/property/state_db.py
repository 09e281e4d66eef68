"""Fresh state DBs for property tests (one per hypothesis example, so no pytest tmp_path), on the
store the test's ``fresh_store`` fixture gives (tests/stores.py: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from pathlib import Path

from ductile.commands.errors import Refused
from ductile.events.log import EventLog, ProjectionApplier, WriteTx
from ductile.events.sqlite_store import connect
from ductile.events.store import EventStore
from ductile.projections.fold import fold_log
from ductile.projections.projection import Projection
from ductile.projections.registry import default_runner
from tests.stores import SQLITE_FRESH, FreshStore


@asynccontextmanager
async def fresh_log(
    durability: str = "full", projections: ProjectionApplier | None = None, store: FreshStore = SQLITE_FRESH
) -> AsyncIterator[EventLog]:
    with store() as empty:
        log = EventLog(empty, durability=durability, projections=projections)
        await log.open()
        try:
            yield log
        finally:
            await log.aclose()


async def submit_wave(log: EventLog, wave: list[tuple[Hashable, Callable[[WriteTx], list]]],
                      accepted: dict) -> None:
    """Submit every unit of one wave at once (so they share writer batches); a unit either is
    ``Refused`` and leaves nothing behind, or its events are added to ``accepted[key]``."""
    results = await asyncio.gather(*(log.submit(work) for _, work in wave), return_exceptions=True)
    for (key, _), result in zip(wave, results, strict=True):
        if isinstance(result, BaseException):
            assert isinstance(result, Refused), result
        else:
            accepted[key].extend(result)


def assert_rebuild_reproduces(store: EventStore, tables: tuple[str, ...] | list[str]) -> None:
    """Replaying the whole log reproduces the projections the writer kept live (log closed)."""
    conn = store.open_writer("normal")
    try:
        live = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
        default_runner().rebuild(conn)
        assert {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables} == live
    finally:
        conn.close()


def folded_tables(path: Path, projections: tuple[Projection, ...], *, bulk: bool) -> dict[str, list[tuple]]:
    """Every row of ``projections``' tables after a whole-log fold (bulk folds or live handlers), in
    the tables' own order, so rows written in another order differ too; the fold is rolled back."""
    conn = connect(path, "normal")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            fold_log(conn, projections, bulk=bulk)
            return {t: conn.execute(f"SELECT * FROM {t}").fetchall() for p in projections for t in p.tables}
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()
