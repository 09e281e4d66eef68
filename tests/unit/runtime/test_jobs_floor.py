"""bench/jobs_floor.py measures the job path without the writer's work, or with the durable log's
work alone: it is only a floor while the slots it runs are the dispatcher's own, so a floor run
must spawn, classify, log and record each job exactly as the real dispatcher over the real event
log does, and the append floor must leave in its log the events the real use cases append."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
import yaml

from ductile.app import jobs
from ductile.commands.jobs import EnqueueJob
from ductile.config.discovery import find_config
from ductile.config.loader import Config, load_config
from ductile.events.log import EventLog, read_rows, verify_chain
from ductile.events.record import Recorded
from ductile.events.sqlite_store import SqliteStore, connect_async
from ductile.projections.job_queries import get_job
from ductile.projections.registry import default_runner
from ductile.runtime import dispatcher
from ductile.runtime.catalog import load_catalog
from ductile.vocabulary import AttemptOutcome
from tests.polling import until

BENCH = Path(__file__).resolve().parents[3] / "bench"
CATLIKE = Path(__file__).resolve().parents[2] / "plugins" / "catlike"
JOBS = 6
WORKERS = 2

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _floor_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jobs_floor", BENCH / "jobs_floor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the dataclass resolves its annotations through it
    spec.loader.exec_module(module)
    return module


def _config(root: Path) -> Config:
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({
        "service": {"max_workers": WORKERS, "log_level": "info"},
        "state": {"path": "data/ductile.db"},
        "plugin_roots": [str(CATLIKE.parent)],
        "plugins": {"catlike": {"enabled": True}},
    }))
    return load_config(find_config(str(root), None))


def _shape(f: Callable[..., Any]) -> list[tuple[str, object, bool]]:
    """Each parameter's name, kind and whether it may be left out."""
    return [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in inspect.signature(f).parameters.values()]


def _completed(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of every "job completed" line, less what differs from job to job."""
    lines = [r for r in caplog.records if r.getMessage() == "job completed"]
    return sorted(({k: v for k, v in r.fields.items() if k not in ("job_id", "duration_ms")}  # type: ignore[attr-defined]
                   for r in lines), key=repr)


def test_the_floor_stands_in_only_for_the_use_cases_the_writer_runs() -> None:
    floor = _floor_module()
    # The dispatcher itself, not a copy or a subclass of it.
    assert floor.Dispatcher is dispatcher.Dispatcher
    assert not [v for v in vars(floor).values() if isinstance(v, type) and issubclass(v, dispatcher.Dispatcher)
                and v is not dispatcher.Dispatcher]
    # The writer-side use cases it replaces take what the real ones take, so the dispatcher's
    # calls into them are the ones it makes against the real log.
    assert floor.MemoryJobs.claim_next.__name__ == jobs.claim_next.__name__
    assert _shape(floor.MemoryJobs.claim_next)[1:] == _shape(jobs.claim_next)
    assert _shape(floor.MemoryJobs.complete)[1:] == _shape(jobs.complete)


class RealRun(msgspec.Struct, frozen=True):
    """What the real dispatcher over the real event log did with ``JOBS`` catlike jobs."""

    results: list[Any]  # each job's stored result, decoded
    lines: list[dict[str, Any]]  # the "job completed" lines, as _completed gives them
    events: list[Recorded]  # the whole log


async def _real_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> RealRun:
    caplog.clear()
    config = _config(tmp_path / "real")
    events = EventLog(config.store(), "full", default_runner())
    await events.open()
    try:
        ids = [str(uuid.uuid4()) for _ in range(JOBS)]
        for job_id in ids:
            cmd = EnqueueJob(job_id=job_id, plugin="catlike", command="poll", payload={}, submitted_by="api", max_attempts=4)
            await events.submit(lambda tx, c=cmd: jobs.enqueue(tx, c))
        real = dispatcher.Dispatcher(events, load_catalog(config), max_workers=WORKERS, env_passthrough=[],
                                     state_dir=config.state_path.parent)
        task = asyncio.create_task(real.run())
        async with connect_async(events.path) as conn:

            async def results() -> list[Any] | None:
                rows = [await get_job(conn, i) for i in ids]
                return [r["result"] for r in rows if r] if all(r and r["status"] == "succeeded" for r in rows) else None

            stored = await until("every job to succeed", results, timeout=20)
        await real.stop(5)
        await task
        reader = events.reader()
        try:
            logged = read_rows(reader)
        finally:
            reader.close()
    finally:
        await events.aclose()
    return RealRun(results=stored, lines=_completed(caplog), events=logged)


async def _floor_run(tmp_path: Path, caplog: pytest.LogCaptureFixture, **kind: str) -> tuple[ModuleType, Config, Any, list[dict[str, Any]]]:
    """A floor run of ``JOBS`` catlike jobs: the bench module, its config, the run, its "job completed" lines."""
    caplog.set_level(logging.INFO, logger="ductile")
    floor = _floor_module()
    config = _config(tmp_path / "floor")
    run = await floor.run_floor(JOBS, load_catalog(config), config.state_path.parent, "catlike", "poll", WORKERS, **kind)
    assert jobs.claim_next is not run.jobs.claim_next  # the real use cases are back after the run
    return floor, config, run, _completed(caplog)


async def test_a_floor_run_spawns_logs_and_completes_each_job_as_the_real_dispatcher_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, run, floor_lines = await _floor_run(tmp_path, caplog)
    real = await _real_run(tmp_path, caplog)

    # Each floor job was a real catlike process, classified as the real dispatcher classifies it.
    results = run.jobs.results
    assert len(results) == JOBS
    assert {r.outcome for r in results} == {AttemptOutcome.OK}
    assert [msgspec.json.decode(r.result or "null") for r in results] == real.results == [{"status": "ok", "result": "ok"}] * JOBS
    assert {r.exit_code for r in results} == {0}
    # And logged alike: one "job completed" line per job, with the same fields.
    assert len(floor_lines) == JOBS
    assert floor_lines == real.lines


def _per_job(records: list[Recorded]) -> list[list[tuple[int, str, int, dict[str, Any]]]]:
    """Each job stream's events (version, type, schema, fields), less what differs from run to run."""
    streams: dict[str, list[tuple[int, str, int, dict[str, Any]]]] = {}
    for rec in records:
        fields = {k: v for k, v in msgspec.structs.asdict(rec.event).items() if k not in ("job_id", "at", "duration_ms")}
        streams.setdefault(rec.stream, []).append((rec.version, rec.type, rec.schema, fields))
    return sorted(streams.values(), key=repr)


async def test_the_append_floor_leaves_the_real_use_cases_events_chained_in_a_durable_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    floor, config, run, floor_lines = await _floor_run(tmp_path, caplog, log_kind="append")
    assert run.log_file == config.state_path.parent / floor.LOG_FILE
    reader = SqliteStore(run.log_file).reader()
    try:
        chain = verify_chain(reader)
        logged = read_rows(reader)
        tables = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        checkpoints = reader.execute("SELECT COUNT(*) FROM projections").fetchone()[0]
    finally:
        reader.close()
    real = await _real_run(tmp_path, caplog)

    # Spawned, classified and logged as the real dispatcher does.
    assert [msgspec.json.decode(r.result or "null") for r in run.jobs.results] == real.results
    assert floor_lines == real.lines
    # Exactly the real path's events, one stream per job, in a log whose chain verifies.
    assert chain.ok and chain.events == 3 * JOBS, chain
    assert Counter(r.type for r in logged) == {"JobEnqueued": JOBS, "JobStarted": JOBS, "JobSucceeded": JOBS}
    assert _per_job(logged) == _per_job(real.events)
    # No projection: the store's own tables only, and no projection's checkpoint.
    assert tables == {"events", "ductile_meta", "projections"}, tables
    assert checkpoints == 0
    assert run.commits > 0
