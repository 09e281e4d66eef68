"""Fresh state DBs for property tests (one per hypothesis example, so no pytest tmp_path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from ductile.events.log import EventLog, ProjectionApplier


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
