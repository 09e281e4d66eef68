"""Storage faults: a job whose completion cannot be committed must still end in a defined state,
enqueues are refused clearly, and the gateway recovers without a restart (issue 9: B, C; issue 16
item 5).

In process: the real dispatcher, ``EventLog`` and plugin, and the real HTTP app. A full disk is
real: the writer connection's ``max_page_count`` is pinned at the file's current size, so SQLite
answers ``database or disk is full`` exactly as on a full disk. An I/O error and a read-only
database are injected at the writer's seam, its ``COMMIT``, with SQLite's own error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from ductile.api.app import create_app
from ductile.api.auth import TokenSet
from ductile.app import jobs
from ductile.app.facade import Ductile
from ductile.commands.jobs import EnqueueJob
from ductile.config.discovery import ConfigSource
from ductile.config.loader import load_config
from ductile.events import sqlite_store as log_module  # where the SQLite store opens its writer
from ductile.events.log import EventLog, WriteTx
from ductile.projections.job_queries import get_job
from ductile.projections.registry import default_runner
from ductile.runtime import dispatcher as dispatcher_module
from ductile.runtime.catalog import load_catalog
from ductile.runtime.dispatcher import Dispatcher
from ductile.runtime.services import Services
from ductile.system.logs import JsonFormatter
from tests.polling import until

TEST_PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
RIG_TOKEN = "rig-token"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    def __init__(self, events: EventLog, services: Services, http: httpx.AsyncClient) -> None:
        self.events = events
        self.services = services
        self.http = http

    async def enqueue(self, payload: dict[str, Any]) -> str:
        cmd = EnqueueJob(job_id=str(uuid.uuid4()), plugin="quirks", command="poll", payload=payload,
                         submitted_by="test", max_attempts=1)
        return (await self.events.submit(lambda tx: jobs.enqueue(tx, cmd))).job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        job = await self.services.read(lambda c: get_job(c, job_id))
        assert job is not None
        return job

    async def wait(self, what: str, check: Callable[[], Any], timeout: float = 10) -> Any:
        return await until(what, check, timeout, interval=0.02)

    async def health(self) -> dict[str, Any]:
        resp = await self.http.get("/healthz")
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def pin_size(self, pages: int | None) -> None:
        """Cap the log at ``pages`` (None: at its current size). Retried: while the disk is "full"
        this unit may share a batch with one that fails; the pragma holds either way."""

        def pin(tx: WriteTx) -> None:
            if pages is None:
                size = tx.conn.execute("PRAGMA page_count").fetchone()[0]
                tx.conn.execute(f"PRAGMA max_page_count = {size}")
            else:
                tx.conn.execute(f"PRAGMA max_page_count = {pages}")

        for _ in range(50):
            try:
                await self.events.submit(pin)
                return
            except sqlite3.OperationalError:
                await asyncio.sleep(0.02)
        raise AssertionError("could not change max_page_count")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path) as r:
        yield r


@contextlib.asynccontextmanager
async def open_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(yaml.safe_dump({
        "service": {"max_workers": 1},
        "state": {"path": "data/ductile.db"},
        "plugin_roots": [str(TEST_PLUGINS)],
        "plugins": {"quirks": {"enabled": True, "retry": {"max_attempts": 1}}},
    }))
    config = load_config(ConfigSource(root_file=config_dir / "config.yaml", config_dir=config_dir, source="explicit"))
    catalog = load_catalog(config)
    events = await EventLog(config.state_path, "full", default_runner()).open()
    services = Services(events)
    dispatcher = Dispatcher(events, catalog, max_workers=1, env_passthrough=[], state_dir=config.state_path.parent,
                            live=services.live)
    task = asyncio.create_task(dispatcher.run())
    app = create_app(Ductile(config, catalog, events, services), services, TokenSet([(RIG_TOKEN, ["*"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"Authorization": f"Bearer {RIG_TOKEN}"}) as http:
        try:
            yield Rig(events, services, http)
        finally:
            await dispatcher.stop(5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await services.close()
            await events.aclose()


def _json_line(record: logging.LogRecord) -> dict[str, Any]:
    """The record as the gateway would print it."""
    return msgspec.json.decode(JsonFormatter().format(record))


async def test_full_disk_at_completion_degrades_health_then_records_the_result_once_it_clears(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ductile")
    assert (await rig.health())["status"] == "ok"
    job_id = await rig.enqueue({"mode": "slow_big", "seconds": 0.5})
    await rig.wait("the job to run", lambda: _status_is(rig, job_id, "running"))
    await rig.pin_size(None)  # the 300 kB answer cannot fit

    health = await rig.wait("health to turn degraded", lambda: _degraded(rig))
    assert health["degraded"] == ["event log not writable: database or disk is full"]
    assert (await rig.job(job_id))["status"] == "running"  # held, not lost: its process has ended

    await rig.pin_size(1 << 30)  # the disk has room again
    await rig.wait("the job to succeed", lambda: _status_is(rig, job_id, "succeeded"))
    health = await rig.health()
    assert health["status"] == "ok" and "degraded" not in health

    warnings = [r for r in caplog.records if r.getMessage() == "event log not writable"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "Traceback" in _json_line(warnings[0])["stack"]
    retried = [r for r in caplog.records if r.getMessage().startswith("job result not recorded")]
    assert len(retried) == 1 and "OperationalError" in _json_line(retried[0])["stack"]


async def test_any_other_error_while_recording_a_result_fails_the_job_and_frees_the_slot(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = jobs.complete
    broken = {"left": 1}

    def complete_once_broken(tx: WriteTx, *args: Any, **kw: Any) -> Any:
        if broken["left"]:
            broken["left"] -= 1
            raise OverflowError("can't serialize ints < -2**63 or > 2**64 - 1")
        return real(tx, *args, **kw)

    monkeypatch.setattr(dispatcher_module.jobs, "complete", complete_once_broken)
    first = await rig.enqueue({"mode": "blank_result"})
    second = await rig.enqueue({"mode": "blank_result"})  # max_workers is 1: needs the slot back
    job = await rig.wait("the first job to end", lambda: _ended(rig, first))
    assert job["status"] == "failed"
    assert job["last_error"] == ("internal error: the result could not be recorded: "
                                 "OverflowError: can't serialize ints < -2**63 or > 2**64 - 1")
    assert (await rig.wait("the second job to end", lambda: _ended(rig, second)))["status"] == "succeeded"


async def _status_is(rig: Rig, job_id: str, status: str) -> bool:
    return (await rig.job(job_id))["status"] == status


async def _ended(rig: Rig, job_id: str) -> dict[str, Any] | None:
    job = await rig.job(job_id)
    return job if job["status"] not in ("queued", "running") else None


async def _degraded(rig: Rig) -> dict[str, Any] | None:
    health = await rig.health()
    return health if health["status"] == "degraded" else None


async def test_a_result_fails_its_job_even_when_routing_keeps_raising(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_routing(tx: WriteTx, job: Any, outcome: Any) -> list[Any]:
        raise RuntimeError("router exploded")

    monkeypatch.setattr(Dispatcher, "_after", lambda self, gen, classified: broken_routing)
    job_id = await rig.enqueue({"mode": "blank_result"})
    job = await rig.wait("the job to end", lambda: _ended(rig, job_id))
    assert (job["status"], job["last_error"]) == (
        "failed", "internal error: the result could not be recorded: RuntimeError: router exploded")


# --- issue 16 item 5: storage faults at enqueue, at completion, and the recovery ---------------------

class FaultyCommit:
    """The writer's connection, whose ``COMMIT`` fails with SQLite error ``code`` while one is set."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.failing: tuple[int, str] | None = None

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.failing is not None:
            code, message = self.failing
            exc = sqlite3.OperationalError(message)
            exc.sqlite_errorcode = code  # type: ignore[attr-defined]  # as SQLite's own would carry
            raise exc
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


FAULTS = {
    "disk-full": (13, "database or disk is full"),  # real, through max_page_count
    "io-error": (10, "disk I/O error"),  # SQLITE_IOERR
    "read-only": (8, "attempt to write a readonly database"),  # SQLITE_READONLY
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_storage_fault_refuses_enqueues_holds_the_running_job_and_recovers_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    writers: list[FaultyCommit] = []
    real_connect = log_module.connect

    def connect(path: Any, durability: str = "full", readonly: bool = False) -> Any:
        conn = real_connect(path, durability, readonly)
        if readonly:
            return conn
        writers.append(FaultyCommit(conn))
        return writers[-1]

    monkeypatch.setattr(log_module, "connect", connect)
    async with open_rig(tmp_path) as rig:
        running = await rig.enqueue({"mode": "slow_big", "seconds": 0.5})
        acknowledged = await rig.enqueue({"mode": "blank_result"})  # waits for the only worker slot
        await rig.wait("the first job to run", lambda: _status_is(rig, running, "running"))
        message = FAULTS[fault][1]
        if fault == "disk-full":
            await rig.pin_size(None)
        else:
            writers[-1].failing = FAULTS[fault]

        health = await rig.wait("health to turn degraded", lambda: _degraded(rig))
        assert health["degraded"] == [f"event log not writable: {message}"]
        # Larger than any free page a full disk may still hold: an enqueue that fits is simply stored.
        refused = await rig.http.post("/plugin/quirks/poll", json={"payload": {"mode": "blank_result",
                                                                               "pad": "p" * 200_000}})
        assert (refused.status_code, refused.json()) == (500, {"error": "failed to enqueue job"})
        assert (await rig.job(running))["status"] == "running"  # held, not lost
        assert (await rig.job(acknowledged))["status"] == "queued"

        if fault == "disk-full":
            await rig.pin_size(1 << 30)
        else:
            writers[-1].failing = None
        await rig.wait("the held job to succeed", lambda: _status_is(rig, running, "succeeded"))
        await rig.wait("the acknowledged job to succeed", lambda: _status_is(rig, acknowledged, "succeeded"))
        health = await rig.health()
        assert health["status"] == "ok" and "degraded" not in health
        accepted = await rig.http.post("/plugin/quirks/poll", json={"payload": {"mode": "blank_result"}})
        assert accepted.status_code == 202, accepted.text
        await rig.wait("a new job to succeed", lambda: _status_is(rig, accepted.json()["job_id"], "succeeded"))
