"""`ductile system rebuild` on a log above the two-process threshold (``fold_worker.WORKER_MIN_EVENTS``):
the real CLI, its worker process and the copy back reproduce the projections the live path kept."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ductile.commands.jobs import ERROR, OK, TIMEOUT
from ductile.events.log import EventLog, WriteTx
from ductile.events.sqlite_store import connect
from ductile.events.types import EventBase, SchedulePlanned, schedule_stream
from ductile.projections.fold_worker import WORKER_MIN_EVENTS
from ductile.projections.registry import ALL, default_runner
from tests.mixed_log import Script

TABLES = [t for p in ALL for t in p.tables]
STEPS_PER_UNIT = 200  # steps written per commit: the live path is slow per commit, not per event


def _steps(rng: random.Random) -> list[tuple[str, Any]]:
    kind = rng.choices(("job", "state", "fact", "breaker", "vault", "prune"), (80, 6, 5, 5, 2, 0.2))[0]
    if kind == "job":
        return [("job", {"plugin": rng.choice(["echo", "rss"]),
                         "outcomes": rng.choices([OK, ERROR, TIMEOUT], (70, 20, 10), k=rng.randrange(0, 4)),
                         "kill": rng.random() < 0.05, "child": rng.random() < 0.2, "scheduled": rng.random() < 0.3})]
    arg: Any = {"state": "echo", "fact": "rss", "breaker": "echo"}.get(kind)
    if kind == "vault":
        arg = rng.randrange(4)
    if kind == "prune":
        arg = rng.uniform(0.1, 0.5)
    return [(kind, arg)]


def _write_log(path: Path, events: int) -> int:
    """A log of more than ``events`` events, its projections kept live; returns its head."""
    rng, script = random.Random(15), Script()
    log = EventLog(path, durability="normal", projections=default_runner()).open_sync()
    written = 0
    try:
        plan = [SchedulePlanned(plugin=p, schedule_id="tick", plan_key="k", command="poll", mode="interval",
                                timezone="UTC", next_slot_at=script.now, next_run_at=script.now,
                                first_seen_at=script.now, reason="config", at=script.tick()) for p in ("echo", "rss")]
        units: list[tuple[str, list[EventBase]]] = [(schedule_stream(e.plugin, "tick"), [e]) for e in plan]
        while written <= events:
            for _ in range(STEPS_PER_UNIT):
                for kind, arg in _steps(rng):
                    units.extend(script.units(kind, arg))

            def work(tx: WriteTx, units: list[tuple[str, list[EventBase]]] = units) -> None:
                for stream, batch in units:
                    tx.append(stream, batch)

            log.submit_sync(work)
            written += sum(len(batch) for _, batch in units)
            units = []
    finally:
        log.close()
    return written


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = connect(db, "normal")
    try:
        # Sorted: the live path and the fold may place a row pruned and re-inserted differently.
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A gateway directory whose log is just above the worker's threshold, written once; each
    test works on its own copy."""
    root = tmp_path_factory.mktemp("written")
    (root / "plugins").mkdir()
    (root / "config.yaml").write_text("state:\n  path: state.db\nplugin_roots:\n  - plugins\n")
    head = _write_log(root / "state.db", WORKER_MIN_EVENTS)
    assert head > WORKER_MIN_EVENTS
    return root, head


def _copy(written: tuple[Path, int], tmp_path: Path) -> Path:
    root = tmp_path / "gateway"
    shutil.copytree(written[0], root)
    return root


def _rebuild(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", "system", "rebuild", "--config", str(root),
                           *args], capture_output=True, text=True, timeout=300, env=env or dict(os.environ),
                          check=False)


def test_system_rebuild_above_the_threshold_reproduces_the_live_projections(
    written: tuple[Path, int], tmp_path: Path,
) -> None:
    root, head = _copy(written, tmp_path), written[1]
    db = root / "state.db"
    live = _tables(db)
    assert live["job_queue"] and live["job_log"] and live["plugin_state"] and live["schedule_jobs"]
    out = _rebuild(root, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["position"] == head
    applied = {p["name"]: p["events_applied"] for p in report["projections"]}
    assert applied["queue"] > 0 and applied["ledger"] > 0 and applied["plugin_state"] > 0
    assert _tables(db) == live
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".ductile-fold-")) == []


def test_a_failed_fold_worker_is_one_error_line_and_its_traceback_under_ductile_debug(
    written: tuple[Path, int], tmp_path: Path,
) -> None:
    root = _copy(written, tmp_path)
    db = root / "state.db"
    # An event no release knows, after the last: only the worker reads every event (the rebuild
    # process reads the ledger's types alone), so the worker is the one that fails.
    conn = connect(db, "normal")
    try:
        conn.execute("INSERT INTO events(position, event_id, stream, version, type, schema, recorded_at, data, chain)"
                     " SELECT position + 1, X'00ff', 'stranger', 1, 'Stranger', 1, recorded_at, data, chain"
                     " FROM events ORDER BY position DESC LIMIT 1")
    finally:
        conn.close()
    live = _tables(db)
    error = "error: the rebuild's fold worker failed: UnknownEventType: unknown event type 'Stranger'"

    plain = _rebuild(root)
    assert plain.returncode == 1
    assert error in plain.stderr.splitlines()
    assert "Traceback" not in plain.stderr

    debug = _rebuild(root, "--json", env={**os.environ, "DUCTILE_DEBUG": "1"})
    assert debug.returncode == 1
    assert json.loads(debug.stdout) == {"error": error.removeprefix("error: ")}
    assert "Traceback (most recent call last)" in debug.stderr and "fold_into_scratch" in debug.stderr
    assert error in debug.stderr.splitlines()

    assert _tables(db) == live  # the projections as they were, and no scratch file left behind
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".ductile-fold-")) == []
