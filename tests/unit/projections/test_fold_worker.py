"""The two-process rebuild (``projections/fold_worker.py``) against the one-process fold on the
frozen release logs, and what a failing worker leaves behind: nothing. Random logs:
``tests/property/test_fast_rebuild_agreement.py``; the CLI on a log above the threshold:
``tests/integration/test_rebuild_worker.py``."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ductile.events.sqlite_store import connect
from ductile.projections import fold_worker
from ductile.projections.fold_worker import FoldWorkerFailed
from ductile.projections.projection import Projection
from ductile.projections.registry import ALL, default_runner
from ductile.projections.runner import ProjectionRunner, RebuildReport

RELEASES = Path(__file__).resolve().parents[2] / "fixtures" / "releases"
TABLES = [t for p in ALL for t in p.tables]
NEVER = 10**12  # a threshold no log reaches: the whole fold in this process


def _rebuilt(db: Path, runner: ProjectionRunner, min_events: int) -> tuple[dict[str, Any], list[RebuildReport]]:
    """Every table of ``db`` (rowids included, in table order), its schema and its checkpoints after
    ``runner`` rebuilt it with the worker from ``min_events`` events."""
    runner.worker_min_events = min_events
    conn = connect(db, "normal")
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # as the store opens it
        reports = runner.rebuild(conn)
        state: dict[str, Any] = {t: conn.execute(f"SELECT rowid, * FROM {t}").fetchall() for t in TABLES}
        state["sqlite_master"] = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").fetchall()
        state["projections"] = conn.execute("SELECT * FROM projections ORDER BY name").fetchall()
        state["attached"] = [row[1] for row in conn.execute("PRAGMA database_list").fetchall()]
        return state, reports
    finally:
        conn.close()


def _scratch_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".ductile-fold-*"))


@pytest.mark.parametrize("release", sorted(p.name for p in RELEASES.iterdir() if p.is_dir()))
def test_the_two_process_rebuild_writes_the_one_process_rows_in_their_order(
    release: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one" / "state.db", tmp_path / "two" / "state.db"
    for db in (one, two):
        db.parent.mkdir()
        shutil.copy(RELEASES / release / "state.db", db)
    copied: list[list[str]] = []
    copy_in = fold_worker._copy_in

    def counted(conn: Any, projections: Any, *args: Any) -> None:
        copied.append([p.name for p in projections])
        copy_in(conn, projections, *args)

    monkeypatch.setattr(fold_worker, "_copy_in", counted)
    alone, alone_reports = _rebuilt(one, default_runner(), NEVER)
    assert copied == []
    split, split_reports = _rebuilt(two, default_runner(), 0)
    assert copied == [[p.name for p in ALL if p.name not in fold_worker.IN_PROCESS]]  # the worker folded them
    assert split == alone
    assert split["job_queue"] and split["job_log"] and split["job_transitions"]
    assert split["attached"] == ["main"]  # the scratch detached once the transaction was over
    assert [(r.name, r.version, r.events_applied) for r in split_reports] == [
        (r.name, r.version, r.events_applied) for r in alone_reports]
    # The worker's projections report the worker's own time (plus the copy), not nothing.
    assert all(r.seconds > 0 for r in split_reports if r.events_applied)
    assert _scratch_files(two.parent) == []


def _state(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = connect(db, "normal")
    try:
        return {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in [*TABLES, "projections"]}
    finally:
        conn.close()


def _rebuilt_once(tmp_path: Path) -> Path:
    db = tmp_path / "state.db"
    shutil.copy(RELEASES / "r2-c82045b" / "state.db", db)
    _rebuilt(db, default_runner(), NEVER)  # current versions, so a failure's "as they were" is visible
    return db


def test_a_failing_worker_fails_the_rebuild_with_its_error_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _rebuilt_once(tmp_path)
    before = _state(db)
    # A projection the worker's registry does not know: the worker fails with its own error.
    stranger = Projection("stranger", 1, "CREATE TABLE IF NOT EXISTS stranger_rows (id INTEGER PRIMARY KEY)",
                          ("stranger_rows",))
    runner = ProjectionRunner([*ALL, stranger])
    runner.worker_min_events = 0
    conn = connect(db, "normal")
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(FoldWorkerFailed) as failed:
            runner.rebuild(conn)
        assert not conn.in_transaction
        assert [row[1] for row in conn.execute("PRAGMA database_list").fetchall()] == ["main"]
    finally:
        conn.close()
    assert str(failed.value) == "the rebuild's fold worker failed: KeyError: 'stranger'"
    logged = [r for r in caplog.records if r.getMessage() == "rebuild's fold worker failed"]
    assert len(logged) == 1 and "Traceback" in logged[0].fields["stack"]  # type: ignore[attr-defined]
    assert _state(db) == before
    assert _scratch_files(tmp_path) == []


@pytest.mark.parametrize(("module", "error"), [
    ("ductile_no_such_worker", "exit status 1: "),
    ("ductile_test_killed_worker", "killed by SIGKILL"),
])
def test_a_worker_that_dies_fails_the_rebuild_and_changes_nothing(
    module: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _rebuilt_once(tmp_path)
    before = _state(db)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "ductile_test_killed_worker.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    monkeypatch.setattr(fold_worker, "_WORKER_MODULE", module)
    conn = connect(db, "normal")
    try:
        runner = default_runner()
        runner.worker_min_events = 0
        with pytest.raises(FoldWorkerFailed) as failed:
            runner.rebuild(conn)
    finally:
        conn.close()
    assert str(failed.value).startswith(f"the rebuild's fold worker failed: {error}")
    if module == "ductile_no_such_worker":
        assert "No module named ductile_no_such_worker" in str(failed.value)
    assert _state(db) == before
    assert _scratch_files(tmp_path) == []


def test_a_log_below_the_threshold_folds_in_this_process(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "state.db"
    shutil.copy(RELEASES / "r2-c82045b" / "state.db", db)
    monkeypatch.setattr(fold_worker, "_worker", None)  # any attempt to start one would fail
    _rebuilt(db, default_runner(), fold_worker.WORKER_MIN_EVENTS)
    assert _scratch_files(tmp_path) == []


def test_an_error_in_this_processs_fold_stops_the_worker_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _rebuilt_once(tmp_path)
    before = _state(db)
    started: list[Any] = []
    worker = fold_worker._worker

    @contextmanager
    def watched(*args: Any) -> Iterator[Any]:
        with worker(*args) as running:
            started.append(running)
            yield running

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C in the middle of this process's fold

    monkeypatch.setattr(fold_worker, "_worker", watched)
    monkeypatch.setattr(fold_worker, "fold_log", interrupted)
    conn = connect(db, "normal")
    try:
        runner = default_runner()
        runner.worker_min_events = 0
        with pytest.raises(KeyboardInterrupt):
            runner.rebuild(conn)
    finally:
        conn.close()
    assert len(started) == 1 and started[0].process.returncode is not None  # stopped and reaped
    assert _state(db) == before
    assert _scratch_files(tmp_path) == []


def test_a_prestarted_worker_is_the_one_the_rebuild_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _rebuilt_once(tmp_path)
    expected, _ = _rebuilt(db, default_runner(), 0)
    monkeypatch.setattr(fold_worker, "WORKER_MIN_EVENTS", 0)  # prestart's guess: any log
    fold_worker.prestart(db, ["ledger"])  # one group only: no worker
    assert fold_worker._prestarted is None
    fold_worker.prestart(db)
    spawned = fold_worker._prestarted
    assert spawned is not None
    try:
        state, _ = _rebuilt(db, default_runner(), 0)
    finally:
        fold_worker.discard_prestarted()
    assert fold_worker._prestarted is None  # the fold took it ...
    assert spawned.process.returncode == 0  # ... and it folded (exit 0 after answering)
    assert state == expected
    assert _scratch_files(tmp_path) == []


def test_an_unused_prestarted_worker_is_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _rebuilt_once(tmp_path)
    monkeypatch.setattr(fold_worker, "WORKER_MIN_EVENTS", 0)
    fold_worker.prestart(db)
    spawned = fold_worker._prestarted
    assert spawned is not None
    fold_worker.discard_prestarted()
    assert fold_worker._prestarted is None and spawned.process.returncode is not None
    fold_worker.prestart(tmp_path / "missing.db")  # no log there: no worker
    assert fold_worker._prestarted is None
