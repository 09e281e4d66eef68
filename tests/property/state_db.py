"""Fresh state DBs for property tests (one per hypothesis example, so no pytest tmp_path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from ductile.events.log import EventLog, ProjectionApplier, connect
from ductile.projections.registry import default_runner


@asynccontextmanager
async def fresh_log(
    durability: str = "full", projections: ProjectionApplier | None = None
) -> AsyncIterator[EventLog]:
    with TemporaryDirectory(prefix="ductile-prop-") as tmp:
        log = EventLog(Path(tmp) / "state.db", durability=durability, projections=projections)
        await log.open()
        try:
            yield log
        finally:
            await log.aclose()


def assert_rebuild_reproduces(path: Path, tables: tuple[str, ...] | list[str]) -> None:
    """Replaying the whole log reproduces the projections the writer kept live (log closed)."""
    conn = connect(path, "normal")
    try:
        live = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
        default_runner().rebuild(conn)
        assert {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables} == live
    finally:
        conn.close()
