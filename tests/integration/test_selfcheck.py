"""``ductile system selfcheck`` against a real gateway's state (operations.md §5): a gateway runs
jobs of every kind (success, retry, failure, a pipeline, a schedule, plugin state, a vault secret);
while it runs the offline selfcheck refuses and ``GET /system/selfcheck`` passes; once it is
stopped the selfcheck passes, and each kind of tampering makes it fail naming the problem. Then a
``kill -9`` under load, a restart and a stop leave it green."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ductile.commands.vault import MISMATCH_REFUSAL
from tests.integration.daemon import Daemon, call, db_file_alone_events, seed_vault, wait_until

CHECKS = ["config_discovery", "config_load", "pid_lock", "db_integrity", "db_schema", "queue_terminal_freshness",
          "event_log_chain", "projection_replay", "vault_agreement"]
ONE_TRY = {"max_attempts": 1}


def _alias(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "uses": "behave", "retry": ONE_TRY, **extra}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("selfcheck") / "gw"
    d = Daemon(root, {
        "behave": {"enabled": True, "retry": ONE_TRY},
        "retrier": _alias(retry={"max_attempts": 3, "backoff_base": "100ms"}),
        "first": _alias(), "second": _alias(),
        "shellok": {"enabled": True, "schedules": [{"id": "tick", "every": "1s"}]},
    }, service={"shutdown_grace": "2s"})
    d.config["pipelines"] = [{"name": "chain", "on": "chain.start", "steps": [
        {"id": "a", "uses": "first", "with": {"mode": "emit", "events": [{"type": "chain.a_done", "payload": {}}]}},
        {"id": "b", "uses": "second", "with": {"mode": "ok"}},
    ]}]
    d.write_config()
    seed_vault(root, {"api_key": "s3cret-value"})  # adopted by the first boot
    d.start()
    counter = root / "counter"
    jobs = [
        d.trigger("behave", payload={"mode": "ok", "state_updates": {"cursor": 7}}),
        d.trigger("behave", payload={"mode": "error_noretry"}),
        d.trigger("retrier", payload={"mode": "fail_then_ok", "counter": str(counter), "fail_times": 1}),
    ]
    for job in jobs:
        d.wait_job(job)
    assert call(d, "POST", "/pipeline/chain?async=true", json={"payload": {}}).status_code == 202
    wait_until(lambda: _succeeded(d, "second") and _succeeded(d, "shellok"), 20, what="the pipeline and a schedule")
    yield d
    d.close()


def _succeeded(d: Daemon, plugin: str) -> bool:
    with closing(d.db()) as db:
        return db.execute("SELECT 1 FROM job_queue WHERE plugin = ? AND status = 'succeeded'",
                          (plugin,)).fetchone() is not None


def _selfcheck(d: Daemon, *extra: str) -> tuple[int, dict[str, Any]]:
    done = d.cli("system", "selfcheck", "--config", str(d.root), "--json", *extra)
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_while_the_gateway_runs_selfcheck_refuses_and_the_online_subset_passes(gw: Daemon) -> None:
    code, report = _selfcheck(gw)
    assert code == 1 and report["healthy"] is False
    lock = _by_name(report)["pid_lock"]
    assert lock["status"] == "fail"
    assert lock["detail"] == (f"gateway is running (pid {gw.proc.pid}); stop it first — "  # type: ignore[union-attr]
                              "selfcheck needs exclusive access to the state DB")
    assert all(c["status"] == "skipped" for c in report["checks"][3:])
    online = call(gw, "GET", "/system/selfcheck").json()
    assert online["healthy"] is True, online
    assert [c["name"] for c in online["checks"]] == [
        "event_log_chain", "projection_replay", "queue_terminal_freshness", "vault_agreement"]


@pytest.fixture(scope="module")
def stopped(gw: Daemon) -> Daemon:
    assert gw.stop() == 0
    return gw


def test_after_a_graceful_stop_every_check_passes(stopped: Daemon) -> None:
    code, report = _selfcheck(stopped)
    assert code == 0, report
    assert report["healthy"] is True and report["captured_at"].endswith("Z")
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert all(c["ok"] and c["status"] == "ok" for c in report["checks"])
    assert _by_name(report)["vault_agreement"]["detail"] == "agrees with the event log (2 secret(s), 1 principal(s))"  # api_key + the admin token
    human = stopped.cli("system", "selfcheck", "--config", str(stopped.root))
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0] == "Selfcheck: PASS"
    assert [line.split(":")[0] for line in lines[1:]] == [f"- {n}" for n in CHECKS]


def test_after_a_graceful_stop_the_db_file_alone_holds_every_event(stopped: Daemon, tmp_path: Path) -> None:
    with closing(stopped.db()) as db:  # the original, with whatever -wal it has
        logged = db.execute("SELECT position, type FROM events ORDER BY position").fetchall()
    copied = db_file_alone_events(stopped.state_db, tmp_path / "copy")
    assert copied == logged and copied[-1][1] == "GatewayStopped"
    assert [p for p, _ in copied] == list(range(1, len(copied) + 1))
    wal = stopped.state_db.with_name(stopped.state_db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the write-ahead log is checkpointed and truncated"


@pytest.fixture
def restore_state(stopped: Daemon) -> Iterator[Daemon]:
    """Tamper freely: the state DB and vault.age are put back after the test."""
    saved = stopped.root.parent / "saved"
    saved.mkdir(exist_ok=True)
    shutil.copy2(stopped.state_db, saved / "ductile.db")
    shutil.copy2(stopped.root / "vault.age", saved / "vault.age")
    yield stopped
    shutil.copy2(saved / "ductile.db", stopped.state_db)
    shutil.copy2(saved / "vault.age", stopped.root / "vault.age")


def _write(d: Daemon, sql: str, *params: Any) -> None:
    import sqlite3

    conn = sqlite3.connect(d.state_db, isolation_level=None)
    try:
        assert conn.execute(sql, params).rowcount == 1
        # Into the main file, so that copying the saved file back undoes the edit.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def test_a_tampered_event_row_fails_the_chain(restore_state: Daemon) -> None:
    _write(restore_state, "UPDATE events SET recorded_at = recorded_at - 1 WHERE position = 5")
    code, report = _selfcheck(restore_state)
    assert code == 1
    assert _by_name(report)["event_log_chain"]["detail"] == "chain broken at position 5 (first bad position 5)"


def test_a_hand_edited_projection_row_fails_the_replay_naming_it(restore_state: Daemon) -> None:
    with closing(restore_state.db()) as db:
        [job_id] = db.execute("SELECT job_id FROM job_queue WHERE plugin = 'retrier'").fetchone()
    _write(restore_state, "UPDATE job_queue SET attempt = 9 WHERE job_id = ?", job_id)
    code, report = _selfcheck(restore_state)
    assert code == 1
    failed = [c["name"] for c in report["checks"] if not c["ok"]]
    assert failed == ["projection_replay"]
    assert _by_name(report)["projection_replay"]["detail"] == (
        f"queue: table job_queue, row (job_id='{job_id}'): column attempt differs from the replay")
    human = restore_state.cli("system", "selfcheck", "--config", str(restore_state.root))
    assert human.returncode == 1 and human.stdout.startswith("Selfcheck: FAIL\n")
    assert f"- projection_replay: FAIL - queue: table job_queue, row (job_id='{job_id}')" in human.stdout


def test_a_swapped_vault_age_fails_the_vault_agreement(restore_state: Daemon, tmp_path: Path) -> None:
    shutil.copy2(restore_state.root / "age.key", tmp_path / "age.key")  # keeps its 0600
    seed_vault_with_key(tmp_path)
    shutil.copy2(tmp_path / "vault.age", restore_state.root / "vault.age")
    code, report = _selfcheck(restore_state)
    assert code == 1
    check = _by_name(report)["vault_agreement"]
    assert (check["status"], check["detail"]) == ("fail", MISMATCH_REFUSAL)


def seed_vault_with_key(config_dir: Path) -> None:
    """Another vault under the same key: decrypts fine, but is not the blob the log recorded."""
    from ductile.app.vault import init_vault
    from ductile.vault.keys import load_keyring

    init_vault(config_dir / "vault.age", load_keyring(config_dir / "age.key"), None)


def test_a_kill_9_under_load_then_a_restart_and_stop_leaves_selfcheck_green(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "gw", {"behave": {"enabled": True, "retry": ONE_TRY}}, service={"shutdown_grace": "1s"})
    try:
        d.start()
        jobs = [d.trigger("behave", payload={"mode": "ok"}) for _ in range(20)]
        d.trigger("behave", payload={"mode": "sleep", "seconds": 30})
        d.wait_job(jobs[0])
        d.kill9()
        d.start()
        # Every acknowledged (202) job survives the kill and ends: succeeded, or dead when it was
        # running at the kill with its one attempt spent (jobs.md crash recovery).
        assert {d.wait_job(job)["status"] for job in jobs} <= {"succeeded", "dead"}
        assert d.stop() == 0
        code, report = _selfcheck(d)
        assert code == 0, report
        with closing(d.db()) as db:
            logged = db.execute("SELECT position, type FROM events ORDER BY position").fetchall()
        copied = db_file_alone_events(d.state_db, tmp_path / "copy")
        assert copied == logged and copied[-1][1] == "GatewayStopped", "the DB file alone holds every event"
    finally:
        d.close()
