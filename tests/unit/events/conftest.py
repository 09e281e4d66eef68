"""Fixtures of the event log conformance suite: every test runs once per durability setting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ductile.events.log import EventLog, ProjectionApplier

OpenLog = Callable[..., Awaitable[EventLog]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["full", "normal"])
def durability(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def open_log(db_path: Path, durability: str) -> AsyncIterator[OpenLog]:
    """``await open_log(projections=None, path=None)``: an open log on a file DB, closed at teardown."""
    opened: list[EventLog] = []

    async def factory(projections: ProjectionApplier | None = None, path: Path | None = None) -> EventLog:
        log = EventLog(path or db_path, durability=durability, projections=projections)
        await log.open()
        opened.append(log)
        return log

    yield factory
    for log in opened:
        await log.aclose()
