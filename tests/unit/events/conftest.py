"""Fixtures of the event log conformance suite: every test runs on each store (SQLite under both
durability settings, PostgreSQL), see tests/stores.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ductile.events.log import EventLog, ProjectionApplier
from ductile.events.store import EventStore
from tests.stores import durability, parametrize_stores, store, store_kind

__all__ = ["durability", "store", "store_kind"]  # fixtures, re-exported for the tests of this folder

OpenLog = Callable[..., Awaitable[EventLog]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def open_log(store: EventStore, durability: str) -> AsyncIterator[OpenLog]:
    """``await open_log(projections=None, path=None)``: an open log on the test's store (or on the
    SQLite file ``path``), closed at teardown."""
    opened: list[EventLog] = []

    async def factory(projections: ProjectionApplier | None = None, path: Path | None = None) -> EventLog:
        log = EventLog(path or store, durability=durability, projections=projections)
        await log.open()
        opened.append(log)
        return log

    yield factory
    for log in opened:
        await log.aclose()
