"""Boot, PID lock, signals, plugin discovery and cross-process enqueues against the real daemon
(operations.md §1–2, plugins.md §1, jobs.md §2 T11, §3–4)."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ductile.events.log import read_rows
from ductile.events.sqlite_store import connect
from ductile.events.types import JobDeduped
from tests.integration.daemon import TOKEN, Daemon, wait_until

BEHAVE = {"behave": {"enabled": True, "retry": {"max_attempts": 1}}}


def job_row(gw: Daemon, job_id: str) -> dict[str, Any]:
    with gw.db() as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM job_queue WHERE job_id=?", (job_id,)).fetchone()
    assert row is not None, job_id
    return dict(row)


def transitions(gw: Daemon, job_id: str) -> list[tuple[str | None, str, str | None]]:
    with gw.db() as db:
        return db.execute(
            "SELECT from_status, to_status, reason FROM job_transitions WHERE job_id=? ORDER BY id", (job_id,)
        ).fetchall()


def attempts(gw: Daemon, job_id: str) -> list[tuple[int, str]]:
    with gw.db() as db:
        return db.execute("SELECT attempt, outcome FROM job_attempts WHERE job_id=? ORDER BY attempt", (job_id,)).fetchall()


def last_event_type(gw: Daemon) -> str:
    with gw.db() as db:
        return db.execute("SELECT type FROM events ORDER BY position DESC LIMIT 1").fetchone()[0]


def messages(gw: Daemon) -> list[str]:
    return [line.get("msg", "") for line in gw.log_lines()]


# --- boot refusals (operations.md §1) ---------------------------------------------------------

def test_a_second_instance_on_the_same_config_refuses_with_the_pid_lock_message(gateway: Any) -> None:
    gw = gateway(BEHAVE)
    assert gw.proc is not None
    lock = gw.root / "data" / "ductile.pid"
    assert lock.read_text().strip() == str(gw.proc.pid)
    second = gw.cli("system", "start", "--config", str(gw.root), timeout=30)
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"failed to acquire PID lock {lock}: another instance is running (pid {gw.proc.pid})"
    )
    assert "Traceback" not in second.stderr + second.stdout
    # The refused start touched nothing: the first gateway still serves, and still holds the lock.
    assert gw.client.get("/healthz").status_code == 200
    assert lock.read_text().strip() == str(gw.proc.pid)


def test_a_leftover_pid_file_whose_lock_is_free_never_blocks_a_start(gateway: Any) -> None:
    gw = gateway(BEHAVE)
    assert gw.stop() == 0
    (gw.root / "data" / "ductile.pid").write_text("999999\n")
    gw.start()
    assert gw.wait_job(gw.trigger("behave"))["status"] == "succeeded"


def test_a_config_error_exits_1_with_the_message_on_stderr_and_no_traceback(gateway: Any, tmp_path: Path) -> None:
    cases = [
        ({"service": {"max_workers": 0}}, "service.max_workers must be > 0"),
        ({"plugin_roots": [str(tmp_path / "missing")]}, f"plugin_roots[0]: {tmp_path / 'missing'} is not a directory"),
    ]
    for kw, message in cases:
        gw = gateway(BEHAVE, start=False, **kw)
        proc = gw.cli("system", "start", "--config", str(gw.root), timeout=30)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        errors = [json.loads(line) for line in proc.stdout.splitlines() if '"ERROR"' in line]
        assert [e["msg"] for e in errors] == [proc.stderr.strip()], "one ERROR log line with the same text"


# --- signals (operations.md §2) ---------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_a_running_job_finish_then_appends_gateway_stopped(gateway: Any, sig: int) -> None:
    gw = gateway(BEHAVE)
    job_id = gw.trigger("behave", payload={"mode": "sleep", "seconds": 2})
    gw.wait_job(job_id, {"running"})
    gw.proc.send_signal(sig)
    wait_until(lambda: "shutdown requested" in messages(gw), 10, what="shutdown requested")
    # New work stops being accepted while the running job drains. A trigger that races the
    # listener closing (uvicorn polls should_exit every 0.1 s) may still get 202: it must stay queued.
    accepted: list[str] = []

    def refused() -> bool:
        try:
            resp = httpx.post(f"{gw.url}/plugin/behave/poll", json={}, timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        except httpx.HTTPError:
            return True
        if resp.status_code == 202:
            accepted.append(resp.json()["job_id"])
            return False
        assert resp.status_code == 503, resp.text
        return True

    wait_until(refused, 1.5, what="new HTTP requests to be refused during the graceful stop")
    assert gw.proc.wait(timeout=30) == 0
    assert all(job_row(gw, j)["status"] == "queued" for j in accepted), "accepted work is never lost"
    assert job_row(gw, job_id)["status"] == "succeeded"
    msgs = messages(gw)
    assert "shutdown requested" in msgs
    completed = next(i for i, line in enumerate(gw.log_lines())
                     if line.get("msg") == "job completed" and line.get("job_id") == job_id)
    assert msgs.index("shutdown requested") < completed, "the job finished during the graceful stop"
    assert last_event_type(gw) == "GatewayStopped"


def test_a_job_outliving_shutdown_grace_stays_running_and_completes_after_restart(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True, "retry": {"max_attempts": 3}}}, service={"shutdown_grace": "1s"})
    job_id = gw.trigger("behave", payload={"mode": "sleep", "seconds": 4})
    gw.wait_job(job_id, {"running"})
    started = time.monotonic()
    assert gw.stop() == 0
    assert time.monotonic() - started < 4, "the stop must not wait for the job beyond the grace"
    assert job_row(gw, job_id)["status"] == "running", "an orphan is left running, recovered at the next boot"
    assert last_event_type(gw) == "GatewayStopped"
    gw.start()
    job = gw.wait_job(job_id, timeout=30)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    assert ("running", "queued", "crash_recovery") in transitions(gw, job_id)
    assert [a[1] for a in attempts(gw, job_id)] == ["interrupted", "ok"]


def test_a_second_sigterm_skips_the_remaining_grace(gateway: Any) -> None:
    gw = gateway(BEHAVE, service={"shutdown_grace": "10s"})
    job_id = gw.trigger("behave", payload={"mode": "sleep", "seconds": 30})
    gw.wait_job(job_id, {"running"})
    gw.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "shutdown requested" in messages(gw), 10, what="shutdown requested")
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=5) == 0, "the second signal ends the grace at once"
    assert job_row(gw, job_id)["status"] == "running"
    assert last_event_type(gw) == "GatewayStopped"


# --- plugin discovery (plugins.md §1) ---------------------------------------------------------

def _plugin(directory: Path, name: str, result: str, protocol: int = 2) -> None:
    directory.mkdir(parents=True)
    (directory / "manifest.yaml").write_text(
        "manifest_spec: ductile.plugin\nmanifest_version: 1\n"
        f"name: {name}\nprotocol: {protocol}\nentrypoint: run.sh\ncommands:\n  - name: poll\n    type: read\n"
    )
    run = directory / "run.sh"
    run.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{{\"status\":\"ok\",\"result\":\"{result}\"}}'\n")
    run.chmod(run.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_discovery_problems_are_logged_and_the_gateway_still_starts(gateway: Any, tmp_path: Path) -> None:
    first, second = tmp_path / "root-a", tmp_path / "root-b"
    _plugin(first / "dupe", "dupe", "from root a")
    _plugin(second / "dupe-copy", "dupe", "from root b")
    _plugin(first / "old", "old", "never", protocol=1)
    orphan = first / "orphan"
    orphan.mkdir()
    (orphan / "run.py").write_text("print('no manifest here')\n")
    gw = gateway({"dupe": {"enabled": True}, "old": {"enabled": True}}, plugin_roots=[str(first), str(second)])

    lines = gw.log_lines()

    def one(msg: str) -> dict[str, Any]:
        found = [line for line in lines if line.get("msg") == msg]
        assert len(found) == 1, (msg, found)
        assert found[0]["level"] == "WARN", found[0]
        return found[0]

    dup = one("duplicate plugin ignored (keeping first discovered)")
    assert str(first / "dupe" / "manifest.yaml") in json.dumps(dup)
    assert str(second / "dupe-copy" / "manifest.yaml") in json.dumps(dup)
    missing = one("plugin directory missing manifest.yaml — directory will be ignored")
    assert missing["path"] == str(orphan)
    failed = one("failed to load plugin")
    assert failed["path"] == str(first / "old" / "manifest.yaml")
    assert "unsupported protocol version: 1" in failed["error"]
    assert any(line["level"] == "ERROR" and 'plugin "old": not discovered in plugin_roots' in line["msg"]
               for line in lines)
    # The first discovered copy is the one that runs; the broken plugin is simply absent.
    assert gw.wait_job(gw.trigger("dupe"))["result"]["result"] == "from root a"
    assert [p["name"] for p in gw.client.get("/plugins").json()["plugins"]] == ["dupe"]
    resp = gw.client.post("/plugin/old/poll", json={})
    assert (resp.status_code, resp.json()) == (400, {"error": "plugin not found"})


# --- cross-process enqueues (jobs.md T11, §4) ------------------------------------------------

def test_a_job_whose_plugin_is_gone_at_claim_ends_dead_without_spawning(gateway: Any, tmp_path: Path) -> None:
    gw = gateway({**BEHAVE, "shellok": {"enabled": True}})
    assert gw.stop() == 0
    record = tmp_path / "spawned.json"
    gone = gw.enqueue_via_log("behave", "poll", {"mode": "ok", "record": str(record)}).job_id
    undeclared = gw.enqueue_via_log("shellok", "custom_cmd").job_id
    gw.set_plugins({"behave": {"enabled": False}, "shellok": {"enabled": True}})
    gw.start()
    assert gw.wait_job(gone)["status"] == "dead"
    assert gw.wait_job(undeclared)["status"] == "dead"
    assert transitions(gw, gone) == [(None, "queued", None), ("queued", "dead", "plugin_unavailable")]
    assert transitions(gw, undeclared) == [(None, "queued", None), ("queued", "dead", "command_not_supported")]
    assert attempts(gw, gone) == [] and attempts(gw, undeclared) == []
    assert not record.exists(), "nothing may be spawned for a dead-at-claim job"
    with gw.db() as db:
        logged = db.execute("SELECT job_id, status FROM job_log WHERE job_id IN (?, ?) ORDER BY job_id",
                            (gone, undeclared)).fetchall()
    assert sorted(logged) == sorted([(gone, "dead"), (undeclared, "dead")]), "one job_log row per terminal job"


def _deduped_events(gw: Daemon) -> list[JobDeduped]:
    conn = connect(gw.state_db, readonly=True)
    try:
        return [r.event for r in read_rows(conn) if isinstance(r.event, JobDeduped)]
    finally:
        conn.close()


def test_enqueue_dedupe_outstanding_recent_success_and_failures(gateway: Any) -> None:
    gw = gateway({**BEHAVE, "other": {"enabled": True, "uses": "behave"}})
    first = gw.enqueue_via_log("behave", "poll", {"mode": "sleep", "seconds": 2}, dedupe_key="k1")
    assert not first.deduped and first.job_id
    gw.wait_job(first.job_id, {"running"})

    again = gw.enqueue_via_log("behave", "poll", {"mode": "ok"}, dedupe_key="k1", dedupe_ttl=3600)
    assert (again.deduped, again.dedupe_reason, again.existing_job_id, again.job_id) == (
        True, "outstanding", first.job_id, None)
    [event] = _deduped_events(gw)
    assert (event.plugin, event.command, event.dedupe_key, event.dedupe_reason, event.existing_job_id) == (
        "behave", "poll", "k1", "outstanding", first.job_id)

    # The scope is (dedupe_key, plugin, command): another command or instance does not collide.
    other_command = gw.enqueue_via_log("behave", "custom_cmd", {"mode": "ok"}, dedupe_key="k1", dedupe_ttl=3600)
    other_plugin = gw.enqueue_via_log("other", "poll", {"mode": "ok"}, dedupe_key="k1", dedupe_ttl=3600)
    assert not other_command.deduped and not other_plugin.deduped
    assert gw.wait_job(other_command.job_id)["status"] == "succeeded"
    assert gw.wait_job(other_plugin.job_id)["status"] == "succeeded"

    assert gw.wait_job(first.job_id)["status"] == "succeeded"
    recent = gw.enqueue_via_log("behave", "poll", {"mode": "ok"}, dedupe_key="k1", dedupe_ttl=3600)
    assert (recent.deduped, recent.dedupe_reason, recent.existing_job_id) == (True, "recent_success", first.job_id)
    no_ttl = gw.enqueue_via_log("behave", "poll", {"mode": "ok"}, dedupe_key="k1", dedupe_ttl=0)
    assert not no_ttl.deduped, "ttl 0 disables the recent-success check"
    assert gw.wait_job(no_ttl.job_id)["status"] == "succeeded"
    assert [e.dedupe_reason for e in _deduped_events(gw)] == ["outstanding", "recent_success"]

    failing = gw.enqueue_via_log("behave", "poll", {"mode": "error_noretry"}, dedupe_key="k2", dedupe_ttl=3600)
    assert gw.wait_job(failing.job_id)["status"] == "failed"
    after_failure = gw.enqueue_via_log("behave", "poll", {"mode": "ok"}, dedupe_key="k2", dedupe_ttl=3600)
    assert not after_failure.deduped, "a failed job never blocks a new enqueue"
    assert gw.wait_job(after_failure.job_id)["status"] == "succeeded"
    # Jobs without a key never dedupe.
    plain = [gw.enqueue_via_log("behave", "poll", {"mode": "ok"}) for _ in range(2)]
    assert not any(p.deduped for p in plain)
