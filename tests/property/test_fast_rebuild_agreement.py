"""Property: the fast fold (`system rebuild`, selfcheck's replay) produces exactly the rows, and the
same tables and indexes, that the live path kept, for random mixed logs: jobs driven by the real
state machine (retries, failures, pipelines' children), plugin state and facts, schedules (re-planned,
paused and resumed), breaker counts, vault changes and retention prunes between them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ductile.commands.jobs import (
    ERROR,
    OK,
    TIMEOUT,
)
from ductile.events.log import EventLog, WriteTx
from ductile.events.sqlite_store import SqliteStore, connect
from ductile.events.types import (
    EventBase,
    SchedulePlanned,
    schedule_stream,
)
from ductile.projections import fold, fold_worker
from ductile.projections.registry import ALL, default_runner
from ductile.projections.replay import replay_and_compare
from tests.mixed_log import Script

from .state_db import assert_rebuild_reproduces, folded_tables

TABLES = [t for p in ALL for t in p.tables]
BULK = tuple(p for p in ALL if p.bulk is not None)

job_spec = st.fixed_dictionaries({
    "plugin": st.sampled_from(["echo", "rss"]),
    "outcomes": st.lists(st.sampled_from([OK, ERROR, TIMEOUT]), min_size=0, max_size=4),
    "kill": st.booleans(),
    "child": st.booleans(),
    "scheduled": st.booleans(),
})
step = st.one_of(
    st.tuples(st.just("job"), job_spec),
    st.tuples(st.just("state"), st.sampled_from(["echo", "rss"])),
    st.tuples(st.just("fact"), st.sampled_from(["echo", "rss"])),
    st.tuples(st.just("breaker"), st.sampled_from(["echo", "rss"])),
    st.tuples(st.just("plan"), st.tuples(st.sampled_from(["echo", "rss"]), st.booleans())),
    st.tuples(st.just("status"), st.tuples(st.sampled_from(["echo", "rss"]), st.sampled_from(["tick", "tock"]),
                                           st.sampled_from(["paused", "active"]))),
    st.tuples(st.just("vault"), st.integers(0, 3)),
    st.tuples(st.just("prune"), st.floats(0.1, 1.0)),
)


def _write_log(path: Path, steps: list[tuple[str, Any]]) -> None:
    script = Script()
    log = EventLog(path, durability="normal", projections=default_runner()).open_sync()
    try:
        plan = [SchedulePlanned(plugin=p, schedule_id="tick", plan_key="k", command="poll", mode="interval",
                                timezone="UTC", next_slot_at=script.now, next_run_at=script.now,
                                first_seen_at=script.now, reason="config", at=script.tick())
                for p in ("echo", "rss")]

        def first(tx: WriteTx) -> None:
            for event in plan:
                tx.append(schedule_stream(event.plugin, "tick"), [event])

        log.submit_sync(first)
        for kind, arg in steps:
            units = script.units(kind, arg)

            def work(tx: WriteTx, units: list[tuple[str, list[EventBase]]] = units) -> None:
                for stream, events in units:
                    tx.append(stream, events)

            log.submit_sync(work)
    finally:
        log.close()


@contextmanager
def _logged(steps: list[tuple[str, Any]]) -> Iterator[Path]:
    """A state database in a fresh directory, holding the log ``steps`` write (the directory goes after)."""
    with TemporaryDirectory(prefix="ductile-prop-") as tmp:
        path = Path(tmp) / "state.db"
        _write_log(path, steps)
        yield path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=30))
def test_the_fast_rebuild_and_replay_equal_the_live_projections(steps: list[tuple[str, Any]]) -> None:
    with _logged(steps) as path:
        replay = replay_and_compare(path, ALL)
        assert replay.ok, replay.detail
        shape = _shape(path)
        assert_rebuild_reproduces(SqliteStore(path), TABLES)
        assert _shape(path) == shape  # the same tables and indexes, with the same DDL
        assert replay_and_compare(path, ALL).ok


def _rebuilt_tables(path: Path, worker_min_events: int) -> dict[str, list[tuple[Any, ...]]]:
    conn = connect(path, "normal")
    try:
        runner = default_runner()
        runner.worker_min_events = worker_min_events
        runner.rebuild(conn)
        return {t: conn.execute(f"SELECT rowid, * FROM {t}").fetchall() for t in TABLES}
    finally:
        conn.close()


@contextmanager
def _lowered(held: int, chunk: int) -> Iterator[None]:
    """Every bulk fold's ``held`` limit and the fold's chunk lowered, in this process and in the
    rebuild's fold worker (``tests/fold_worker_held.py`` in its place), so both write their oldest
    rows mid-log."""
    folds: list[Any] = [p.bulk for p in BULK]  # each a class with a ``held`` limit
    saved = [f.held for f in folds], fold.FOLD_CHUNK, fold_worker._WORKER_MODULE, os.environ.copy()
    for f in folds:
        f.held = held
    fold.FOLD_CHUNK = chunk
    fold_worker._WORKER_MODULE = "tests.fold_worker_held"
    os.environ.update(DUCTILE_TEST_HELD=str(held), DUCTILE_TEST_CHUNK=str(chunk))
    try:
        yield
    finally:
        for f, value in zip(folds, saved[0], strict=True):
            f.held = value
        fold.FOLD_CHUNK, fold_worker._WORKER_MODULE = saved[1], saved[2]
        os.environ.clear()
        os.environ.update(saved[3])


def _job(outcomes: list[Any], *, scheduled: bool = True, kill: bool = False, child: bool = False) -> tuple[str, Any]:
    return ("job", {"plugin": "echo", "outcomes": outcomes, "kill": kill, "child": child, "scheduled": scheduled})


# Every kind of row a bulk fold holds, left outstanding at the end or not: a scheduled job waiting on
# its retry, one that ran out of attempts, a cancelled one, a pipeline's child, a prune between them.
_EVERY_KIND = [_job([ERROR]), _job([ERROR, ERROR, ERROR]), _job([], kill=True), _job([OK], child=True),
               ("prune", 0.5), _job([TIMEOUT, OK]), ("state", "echo"), ("fact", "rss")]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=30), held=st.sampled_from([1, 3, 10_000]),
       chunk=st.sampled_from([1, 5000]))
@example(steps=_EVERY_KIND * 3, held=1, chunk=1)
def test_the_two_process_rebuild_writes_the_one_process_rows_in_their_order(
    steps: list[tuple[str, Any]], held: int, chunk: int
) -> None:
    # fold_worker.py: the worker's projections folded in a second process and copied in; forced on
    # these small logs (its threshold 0), against the whole fold in this process. A low ``held``
    # makes both processes write their oldest rows mid-log (later events of those jobs then take
    # the live handlers).
    with _logged(steps) as path, _lowered(held, chunk):
        alone = _rebuilt_tables(path, 10**12)
        assert _rebuilt_tables(path, 0) == alone
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".ductile-fold-")] == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=40), held=st.sampled_from([1, 2, 4, 10_000]),
       chunk=st.sampled_from([1, 3, 5000]))
@example(steps=_EVERY_KIND, held=1, chunk=1)
@example(steps=_EVERY_KIND, held=10_000, chunk=5000)
def test_every_bulk_fold_writes_the_rows_its_live_handlers_write_in_their_order(
    steps: list[tuple[str, Any]], held: int, chunk: int
) -> None:
    # Small ``held`` and ``chunk`` make the folds write their oldest jobs mid-log (they may after each
    # chunk), so later events of those jobs take the live statements: both paths of each bulk fold
    # are held to the handlers.
    assert BULK, "no projection offers a bulk fold"
    with _logged(steps) as path:
        handlers = folded_tables(path, BULK, bulk=False)
        with _lowered(held, chunk):
            bulk = folded_tables(path, BULK, bulk=True)
        assert bulk == handlers


def test_a_bulk_fold_takes_exactly_the_events_its_live_handlers_take() -> None:
    for p in BULK:
        assert p.bulk is not None
        assert set(p.bulk().handlers) == set(p.handlers), p.name


def _shape(path: Path) -> list[tuple[str, str, str]]:
    conn = connect(path, "normal")
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall())
    finally:
        conn.close()
