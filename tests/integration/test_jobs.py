"""The job engine end to end: real daemon, real plugins, real HTTP (jobs.md, plugins.md)."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from tests.integration.daemon import process_alive, wait_until

FAST_RETRY = {"max_attempts": 3, "backoff_base": "100ms"}


def behave(**extra: Any) -> dict[str, Any]:
    return {"behave": {"enabled": True, "retry": FAST_RETRY, **extra}}


def transitions(gw: Any, job_id: str) -> list[tuple[str | None, str, str | None]]:
    with gw.db() as db:
        return db.execute(
            "SELECT from_status, to_status, reason FROM job_transitions WHERE job_id=? ORDER BY id", (job_id,)
        ).fetchall()


def attempts(gw: Any, job_id: str) -> list[tuple[int, str]]:
    with gw.db() as db:
        return db.execute(
            "SELECT attempt, outcome FROM job_attempts WHERE job_id=? ORDER BY attempt", (job_id,)
        ).fetchall()


def test_success_records_result_state_and_one_ledger_row(gateway: Any) -> None:
    gw = gateway({**behave(), "shellok": {"enabled": True}})
    job_id = gw.trigger("behave", payload={"mode": "ok", "result": "all good", "state_updates": {"n": 1, "keep": None}})
    job = gw.wait_job(job_id)
    assert job["status"] == "succeeded"
    assert job["result"]["result"] == "all good"
    assert transitions(gw, job_id) == [(None, "queued", None), ("queued", "running", None), ("running", "succeeded", None)]
    shell = gw.wait_job(gw.trigger("shellok"))
    assert shell["status"] == "succeeded" and shell["result"]["result"] == "shell says hi"
    with gw.db() as db:
        assert db.execute("SELECT COUNT(*) FROM job_log WHERE job_id=?", (job_id,)).fetchone()[0] == 1
        state = json.loads(db.execute("SELECT state FROM plugin_state WHERE plugin='behave'").fetchone()[0])
    assert state == {"n": 1, "keep": None}


def test_state_is_shallow_merged_across_runs(gateway: Any) -> None:
    gw = gateway(behave())
    for expected in (1, 2, 3):
        job = gw.wait_job(gw.trigger("behave", payload={"mode": "state_bump"}))
        assert job["result"]["result"] == f"count {expected}"


def test_error_with_retry_false_fails_after_one_attempt(gateway: Any) -> None:
    gw = gateway(behave())
    job_id = gw.trigger("behave", payload={"mode": "error_noretry"})
    job = gw.wait_job(job_id)
    assert job["status"] == "failed"
    assert job["last_error"] == "permanent problem"
    assert attempts(gw, job_id) == [(1, "error")]


def test_exit_78_is_never_retried_even_with_retry_true(gateway: Any) -> None:
    gw = gateway(behave())
    job_id = gw.trigger("behave", payload={"mode": "exit78"})
    assert gw.wait_job(job_id)["status"] == "failed"
    assert len(attempts(gw, job_id)) == 1


def test_retryable_error_then_success(gateway: Any, tmp_path: Path) -> None:
    gw = gateway(behave())
    counter = tmp_path / "counter"
    job_id = gw.trigger("behave", payload={"mode": "fail_then_ok", "counter": str(counter), "fail_times": 2})
    job = gw.wait_job(job_id, timeout=30)
    assert job["status"] == "succeeded"
    assert job["attempt"] == 3
    assert attempts(gw, job_id) == [(1, "error"), (2, "error"), (3, "ok")]
    reasons = [t[2] for t in transitions(gw, job_id) if t[1] == "queued" and t[0] == "running"]
    assert reasons == ["transient failure 1", "transient failure 2"]


def test_retries_exhausted_end_failed(gateway: Any) -> None:
    gw = gateway(behave())
    job_id = gw.trigger("behave", payload={"mode": "error", "error": "always"})
    job = gw.wait_job(job_id, timeout=30)
    assert job["status"] == "failed"
    assert [a[1] for a in attempts(gw, job_id)] == ["error", "error", "error"]


def test_ok_with_nonzero_exit_code_succeeds(gateway: Any) -> None:
    gw = gateway(behave())
    job_id = gw.trigger("behave", payload={"mode": "ok_exit3"})
    assert gw.wait_job(job_id)["status"] == "succeeded"
    with gw.db() as db:
        assert db.execute("SELECT exit_code FROM job_attempts WHERE job_id=?", (job_id,)).fetchone()[0] == 3


def test_non_json_and_empty_stdout_are_retried_spawn_errors(gateway: Any) -> None:
    gw = gateway(behave())
    for mode, text in (("nonjson", "plugin output is not valid JSON"), ("empty", "plugin produced no output on stdout")):
        job_id = gw.trigger("behave", payload={"mode": mode})
        job = gw.wait_job(job_id, timeout=30)
        assert job["status"] == "failed"
        assert job["last_error"] == f"plugin spawn failed: decode response: {text}"
        assert [a[1] for a in attempts(gw, job_id)] == ["spawn_error"] * 3


def test_pretty_printed_response_with_unknown_keys_parses(gateway: Any) -> None:
    gw = gateway(behave())
    assert gw.wait_job(gw.trigger("behave", payload={"mode": "pretty"}))["status"] == "succeeded"


def test_stdout_over_ten_mebibytes_fails_the_attempt(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True, "retry": {"max_attempts": 1}}})
    job_id = gw.trigger("behave", payload={"mode": "bigout"})
    job = gw.wait_job(job_id, timeout=30)
    assert job["status"] == "failed"
    assert job["last_error"] == "plugin spawn failed: stdout exceeded 10 MiB limit"
    assert attempts(gw, job_id) == [(1, "spawn_error")]


def test_huge_stderr_is_truncated_and_the_job_still_succeeds(gateway: Any) -> None:
    gw = gateway(behave())
    job_id = gw.trigger("behave", payload={"mode": "bigerr"})
    assert gw.wait_job(job_id)["status"] == "succeeded"
    with gw.db() as db:
        stderr = db.execute("SELECT stderr FROM job_log WHERE job_id=?", (job_id,)).fetchone()[0]
    assert stderr.startswith("HEAD-MARKER")
    assert stderr.rstrip().endswith("TAIL-MARKER")
    assert "bytes truncated ...]" in stderr
    assert len(stderr.encode()) < 70_000


def test_timeout_kills_a_plugin_and_its_child_that_ignore_sigterm(gateway: Any, tmp_path: Path) -> None:
    gw = gateway({"behave": {"enabled": True, "retry": {"max_attempts": 1}, "timeouts": {"poll": "1s"}}})
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    job_id = gw.trigger("behave", payload={"mode": "stubborn", "pidfile": str(pidfile)})
    job = gw.wait_job(job_id, timeout=30)
    elapsed = time.monotonic() - started
    assert job["status"] == "timed_out"
    assert job["last_error"] == "plugin execution timed out after 1s"
    assert elapsed >= 5.5  # 1 s timeout + 5 s SIGTERM grace before SIGKILL
    for pid in map(int, pidfile.read_text().split()):
        wait_until(lambda pid=pid: not process_alive(pid), 5, what=f"pid {pid} to die")


def test_environment_is_limited_to_the_allowlist_and_passthrough(gateway: Any, tmp_path: Path) -> None:
    os.environ["DUCTILE_TEST_PASS"] = "yes"
    os.environ["DUCTILE_TEST_SECRET"] = "no"
    try:
        gw = gateway(behave(), service={"plugin_env_passthrough": ["DUCTILE_TEST_PASS"]})
    finally:
        del os.environ["DUCTILE_TEST_PASS"], os.environ["DUCTILE_TEST_SECRET"]
    record = tmp_path / "request.json"
    gw.wait_job(gw.trigger("behave", payload={"mode": "ok", "record": str(record)}))
    seen = json.loads(record.read_text())
    assert seen["env"].get("DUCTILE_TEST_PASS") == "yes"
    assert "DUCTILE_TEST_SECRET" not in seen["env"]
    request = seen["request"]
    assert list(request) == ["protocol", "job_id", "command", "config", "state", "payload", "context", "deadline_at"]
    assert request["context"] == {"ductile_plugin": "behave"}


def test_handle_trigger_wraps_the_payload_as_an_api_trigger_event(gateway: Any, tmp_path: Path) -> None:
    gw = gateway(behave())
    record = tmp_path / "request.json"
    gw.wait_job(gw.trigger("behave", "handle", {"mode": "ok", "record": str(record)}))
    request = json.loads(record.read_text())["request"]
    assert request["payload"]["type"] == "api.trigger"
    assert request["event"]["type"] == "api.trigger"
    assert request["event"]["payload"]["ductile_plugin"] == "behave"


def test_per_plugin_lane_keeps_a_concurrency_unsafe_plugin_serial(gateway: Any, tmp_path: Path) -> None:
    serial_log = tmp_path / "serial.log"
    parallel_log = tmp_path / "parallel.log"
    gw = gateway({
        "serial": {"enabled": True, "config": {"log": str(serial_log)}},
        "serial2": {"enabled": True, "uses": "serial", "parallelism": 2, "config": {"log": str(parallel_log)}},
        **behave(),
    })
    ids = [gw.trigger("serial", payload={"seconds": 0.4}) for _ in range(3)]
    ids += [gw.trigger("serial2", payload={"seconds": 0.8}) for _ in range(2)]
    other = gw.trigger("behave", payload={"mode": "ok"})
    other_job = gw.wait_job(other)
    for job_id in ids:
        assert gw.wait_job(job_id)["status"] == "succeeded"
    serial = sorted(tuple(map(float, line.split())) for line in serial_log.read_text().splitlines())
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(serial)), serial
    parallel = sorted(tuple(map(float, line.split())) for line in parallel_log.read_text().splitlines())
    assert parallel[1][0] < parallel[0][1], "parallelism: 2 should let two runs overlap"
    # The busy serial lane did not hold up another plugin.
    assert other_job["status"] == "succeeded"


def test_crash_mid_job_is_recovered_and_completes_after_restart(gateway: Any) -> None:
    gw = gateway(behave())
    job_id = gw.trigger("behave", payload={"mode": "sleep", "seconds": 3})
    gw.wait_job(job_id, {"running"})
    gw.kill9()
    gw.start()
    job = gw.wait_job(job_id, timeout=30)
    assert job["status"] == "succeeded"
    assert job["attempt"] == 2
    assert ("running", "queued", "crash_recovery") in transitions(gw, job_id)
    assert [a[1] for a in attempts(gw, job_id)] == ["interrupted", "ok"]
    assert any(line.get("msg") == "orphaned job recovered" and line.get("job_id") == job_id for line in gw.log_lines())
