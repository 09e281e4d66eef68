"""The ``ductile`` CLI as a subprocess against a real daemon (cli.md §1, §2.2, §2.4).

``plugin ...`` talks to the gateway over HTTP; ``job ...`` reads the state DB read-only while the
gateway runs; ``system rebuild`` takes the PID lock, so it refuses while the gateway runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import ductile
from tests.integration.daemon import REPO, TOKEN, Daemon, free_port

JOB_LINE = re.compile(r"^Job ([0-9a-f-]{36}) (\w+) in (\d+)ms: (.*)$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
PLUGINS = {"behave": {"enabled": True, "retry": {"max_attempts": 1}}}


def ductile_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI outside any gateway's directory (for commands that need none)."""
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, **(env or {})})


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("cli") / "gw", PLUGINS)
    d.start()
    yield d
    d.close()


def run_plugin(gw: Daemon, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return gw.cli("plugin", "run", *args, "--api-url", gw.url, env=env)


@pytest.fixture(scope="module")
def noisy_job(gw: Daemon) -> str:
    """A succeeded job with a result and stderr."""
    return gw.wait_job(gw.trigger("behave", payload={"mode": "bigerr"}))["job_id"]


# --- grammar (cli.md §1) ---------------------------------------------------------------------

def test_version_json_is_one_document_with_version_commit_and_build_time() -> None:
    proc = ductile_cli("version", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert set(info) == {"version", "commit", "build_time"}
    assert info["version"] == ductile.__version__
    assert info["commit"]
    assert RFC3339.match(info["build_time"]), info
    human = ductile_cli("version")
    assert human.returncode == 0
    assert human.stdout.splitlines() == [f"ductile {info['version']}", f"commit: {info['commit']}",
                                         f"built_at: {info['build_time']}"]
    assert ductile_cli("--version").stdout == human.stdout


def test_version_does_not_import_the_web_stack() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ductile.cli.main", "version"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0
    assert "ductile.cli.main" in proc.stderr or "ductile.cli" in proc.stderr, "importtime output expected"
    for module in ("litestar", "uvicorn"):
        assert module not in proc.stderr, f"`ductile version` imported {module}"


def test_bare_ductile_and_a_noun_without_verb_print_usage_to_stderr_and_exit_2() -> None:
    for args in ((), ("job",), ("plugin",), ("system",)):
        proc = ductile_cli(*args)
        assert proc.returncode == 2, args
        assert proc.stdout == ""
        assert "Usage" in proc.stderr or "usage" in proc.stderr, proc.stderr
        assert_no_traceback(proc)


def test_help_prints_usage_to_stdout_and_exits_0() -> None:
    for args in (("--help",), ("-h",), ("help",), ("job", "help"), ("job", "list", "--help")):
        proc = ductile_cli(*args)
        assert proc.returncode == 0, args
        assert "Usage" in proc.stdout, args


def test_unparsable_command_lines_exit_2_without_traceback() -> None:
    for args in (("bogus",), ("job", "bogus"), ("job", "list", "--bogus"), ("plugin", "run")):
        proc = ductile_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.strip(), args
        assert_no_traceback(proc)
    assert "bogus" in ductile_cli("bogus").stderr


# --- plugin run / list (cli.md §2.4) -----------------------------------------------------------

def test_plugin_run_wait_prints_the_outcome_and_exits_0(gw: Daemon) -> None:
    proc = run_plugin(gw, "behave", "--payload", '{"mode": "ok", "result": "all done"}', "--wait", "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    m = JOB_LINE.match(proc.stdout.strip())
    assert m, proc.stdout
    job_id, status, _, summary = m.groups()
    assert (status, summary) == ("succeeded", "all done")
    assert gw.job(job_id)["status"] == "succeeded"


def test_plugin_run_wait_exits_1_for_a_failed_job(gw: Daemon) -> None:
    proc = run_plugin(gw, "behave", "--payload", '{"mode": "error_noretry"}', "--wait", "--api-key", TOKEN)
    assert proc.returncode == 1
    m = JOB_LINE.match(proc.stdout.strip())
    assert m, proc.stdout
    assert (m.group(2), m.group(4)) == ("failed", "permanent problem")


def test_plugin_run_without_wait_prints_the_queued_job(gw: Daemon) -> None:
    proc = run_plugin(gw, "behave", "--payload", '{"mode": "ok"}', "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    m = re.fullmatch(r"Queued job ([0-9a-f-]{36}) \(behave poll\)\n", proc.stdout)
    assert m, proc.stdout
    as_json = run_plugin(gw, "behave", "--payload", '{"mode": "ok"}', "--api-key", TOKEN, "--json")
    body = json.loads(as_json.stdout)
    assert list(body) == ["job_id", "status", "plugin", "command"] and body["status"] == "queued"
    waited = json.loads(run_plugin(gw, "behave", "--wait", "--json", "--api-key", TOKEN).stdout)
    assert waited == gw.job(waited["job_id"]), "--wait --json prints the GET /job/{id} body"


def test_plugin_run_refuses_a_payload_that_is_not_an_object(gw: Daemon) -> None:
    before = len(gw.client.get("/jobs", params={"limit": 200}).json()["jobs"])
    for bad in ("[1]", "5", '"text"', "not json"):
        proc = run_plugin(gw, "behave", "--payload", bad, "--api-key", TOKEN)
        assert proc.returncode == 1, bad
        assert proc.stderr.strip() == "error: --payload must be a JSON object", bad
        assert_no_traceback(proc)
    assert len(gw.client.get("/jobs", params={"limit": 200}).json()["jobs"]) == before


def test_plugin_run_reads_the_payload_from_a_file_or_stdin(gw: Daemon, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"mode": "ok", "result": "from file"}')
    proc = run_plugin(gw, "behave", "--payload-file", str(payload), "--wait", "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(": from file")
    stdin = subprocess.run(
        [sys.executable, "-m", "ductile.cli.main", "plugin", "run", "behave", "--payload-file=-", "--wait",
         "--api-url", gw.url, "--api-key", TOKEN],
        input='{"mode": "ok", "result": "from stdin"}', capture_output=True, text=True, timeout=60, cwd=gw.root,
    )
    assert stdin.returncode == 0, stdin.stderr
    assert stdin.stdout.strip().endswith(": from stdin")
    payload.write_text("[1, 2]")
    bad = run_plugin(gw, "behave", "--payload-file", str(payload), "--api-key", TOKEN)
    assert (bad.returncode, bad.stderr.strip()) == (1, "error: --payload must be a JSON object")


def test_plugin_run_payload_file_dash_as_a_separate_word_reads_stdin(gw: Daemon) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ductile.cli.main", "plugin", "run", "behave", "--payload-file", "-", "--wait",
         "--api-url", gw.url, "--api-key", TOKEN],
        input='{"mode": "ok", "result": "dash"}', capture_output=True, text=True, timeout=60, cwd=gw.root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(": dash")


def test_plugin_run_wait_timeout_is_a_duration_and_a_timeout_exits_1(gw: Daemon) -> None:
    ok = run_plugin(gw, "behave", "--wait", "--timeout", "5m", "--api-key", TOKEN)
    assert ok.returncode == 0, ok.stderr
    slow = run_plugin(gw, "behave", "--payload", '{"mode": "sleep", "seconds": 3}', "--wait", "--timeout", "1s",
                      "--api-key", TOKEN)
    assert slow.returncode == 1
    assert "timed out" in slow.stderr


def test_plugin_run_takes_the_key_from_ductile_api_key(gw: Daemon) -> None:
    proc = run_plugin(gw, "behave", "--wait", env={"DUCTILE_API_KEY": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert JOB_LINE.match(proc.stdout.strip())
    wrong = run_plugin(gw, "behave", env={"DUCTILE_API_KEY": "not-the-token"})
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "error: POST /plugin/behave/poll failed (401): invalid token"
    missing = run_plugin(gw, "behave", env={"DUCTILE_API_KEY": ""})
    assert missing.returncode == 1
    assert "api-key" in missing.stderr


def test_plugin_run_reports_an_api_refusal(gw: Daemon) -> None:
    proc = run_plugin(gw, "nope", "--api-key", TOKEN)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: POST /plugin/nope/poll failed (400): plugin not found"
    proc = run_plugin(gw, "behave", "--command", "zzz", "--api-key", TOKEN, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"error": "POST /plugin/behave/zzz failed (400): command not supported by plugin"}


def test_plugin_list_json_is_the_plugins_body(gw: Daemon) -> None:
    proc = gw.cli("plugin", "list", "--json", "--api-url", gw.url, "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == gw.client.get("/plugins").json()
    human = gw.cli("plugin", "list", "--api-url", gw.url, env={"DUCTILE_API_KEY": TOKEN})
    assert human.returncode == 0
    header, row = human.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "COMMANDS"]
    assert row.split() == ["behave", "0.1", "poll,handle,custom_cmd"]


def test_gateway_clients_report_an_unreachable_gateway(gw: Daemon) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("plugin", "list"), ("plugin", "run", "behave"), ("plugin", "run", "behave", "--wait")):
        proc = gw.cli(*args, "--api-url", url, "--api-key", TOKEN)
        assert proc.returncode == 1, args
        line = proc.stderr.strip()
        assert line.startswith(f"error: cannot reach the gateway at {url}: "), line
        assert line.endswith("(is it running? try 'ductile system status')"), line
        assert_no_traceback(proc)


# --- job inspect / logs / list (cli.md §2.4) -------------------------------------------------

def test_job_inspect_json_shows_everything_including_result_and_stderr(gw: Daemon, noisy_job: str) -> None:
    proc = gw.cli("job", "inspect", noisy_job, "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"job", "transitions", "attempts", "lineage", "children", "dispatches", "context"} <= set(report)
    job = report["job"]
    assert job["job_id"] == noisy_job and job["status"] == "succeeded"
    assert job["payload"] == {"mode": "bigerr"}
    assert job["result"] == {"status": "ok", "result": "noisy but fine"}
    assert job["stderr"].startswith("HEAD-MARKER") and "TAIL-MARKER" in job["stderr"]
    assert [(t["from_status"], t["to_status"], t["reason"]) for t in report["transitions"]] == [
        (None, "queued", None), ("queued", "running", None), ("running", "succeeded", None)]
    assert all(RFC3339.match(t["created_at"]) for t in report["transitions"])
    [attempt] = report["attempts"]
    assert attempt["attempt"] == 1 and attempt["outcome"] == "ok"
    assert isinstance(attempt["duration_ms"], int)
    assert [n["job_id"] for n in report["lineage"]] == [noisy_job]
    assert report["children"] == []
    # The operator sees what an API caller without jobs:result:ro would not.
    api_view = gw.job(noisy_job)
    assert {k: job[k] for k in api_view} == api_view


def test_job_inspect_human_has_its_sections(gw: Daemon, noisy_job: str) -> None:
    proc = gw.cli("job", "inspect", noisy_job, "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for section in ("Job", "Transitions", "Attempts"):
        assert section in lines
    assert f"  job_id: {noisy_job}" in lines
    assert "HEAD-MARKER" in proc.stdout and "noisy but fine" in proc.stdout


def test_job_inspect_unknown_job_exits_1(gw: Daemon) -> None:
    proc = gw.cli("job", "inspect", "no-such-job", "--config", str(gw.root))
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: job not found: no-such-job"
    as_json = gw.cli("job", "inspect", "no-such-job", "--config", str(gw.root), "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {"error": "job not found: no-such-job"}


def _logs(gw: Daemon, *args: str) -> dict[str, Any]:
    proc = gw.cli("job", "logs", "--json", "--config", str(gw.root), *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_job_logs_json_and_filters(gw: Daemon, noisy_job: str) -> None:
    failed = gw.wait_job(gw.trigger("behave", payload={"mode": "error_noretry"}))["job_id"]
    every = _logs(gw)
    assert set(every) == {"total", "logs"}
    assert every["total"] == len(every["logs"]) >= 2
    completed = [e["completed_at"] for e in every["logs"]]
    assert completed == sorted(completed, reverse=True)
    for e in every["logs"]:
        assert e["log_id"] == f"{e['job_id']}-{e['attempt']}"
        assert "result" not in e
    api = gw.client.get("/job-logs").json()
    assert every == {"total": api["total"], "logs": api["logs"]}, "the CLI shows what /job-logs shows"
    assert next(e["job_id"] for e in _logs(gw, "--status", "error")["logs"]) == failed
    assert all(e["status"] == "succeeded" for e in _logs(gw, "--status", "ok")["logs"])
    assert _logs(gw, "--plugin", "nope") == {"total": 0, "logs": []}
    one = _logs(gw, "--limit", "1")
    assert len(one["logs"]) == 1 and one["total"] == every["total"]
    assert all("result" in e for e in _logs(gw, "--include-result")["logs"])
    assert [e["job_id"] for e in _logs(gw, "--query", "HEAD-marker")["logs"]] == [noisy_job]
    human = gw.cli("job", "logs", "--config", str(gw.root), "--limit", "1")
    assert human.stdout.splitlines()[0] == f"Job Logs (total={every['total']})"
    assert re.match(r"^- \S+ failed behave:poll job=[0-9a-f-]{36} attempt=1 submitted_by=api$", human.stdout.splitlines()[1])


def test_job_logs_and_list_reject_bad_filters(gw: Daemon) -> None:
    cases = [
        (("job", "logs", "--limit", "0"), "--limit must be between 1 and 200"),
        (("job", "logs", "--limit", "201"), "--limit must be between 1 and 200"),
        (("job", "logs", "--status", "bogus"), "invalid status filter"),
        (("job", "logs", "--from", "yesterday"), "invalid --from timestamp"),
        (("job", "logs", "--to", "bogus"), "invalid --to timestamp"),
        (("job", "list", "--status", "bogus"), "invalid status filter"),
        (("job", "list", "--limit", "0"), "--limit must be between 1 and 200"),
    ]
    for args, message in cases:
        proc = gw.cli(*args, "--config", str(gw.root))
        assert proc.returncode == 1, args
        assert proc.stderr.strip() == f"error: {message}", args
        assert_no_traceback(proc)
        as_json = gw.cli(*args, "--config", str(gw.root), "--json")
        assert json.loads(as_json.stdout) == {"error": message}, args


def test_config_flags_spellings_and_environment(gw: Daemon) -> None:
    expected = gw.client.get("/jobs", params={"limit": 1}).json()
    for args, env in (
        (("--config", str(gw.root)), None),
        (("--config=" + str(gw.root),), None),
        (("-config", str(gw.root)), None),
        (("-c", str(gw.root)), None),
        (("--config-dir", str(gw.root)), None),
        ((), {"DUCTILE_CONFIG_DIR": str(gw.root)}),
    ):
        proc = gw.cli("job", "list", "--json", "--limit=1", *args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert json.loads(proc.stdout) == expected, args
    both = gw.cli("job", "list", "--config", str(gw.root), "--config-dir", str(gw.root))
    assert both.returncode == 1
    assert "use only one of --config or --config-dir" in both.stderr
    assert_no_traceback(both)


def test_job_list_json_matches_get_jobs(gw: Daemon) -> None:
    proc = gw.cli("job", "list", "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == gw.client.get("/jobs").json()
    human = gw.cli("job", "list", "--config", str(gw.root), "--status", "failed")
    assert human.stdout.split("\n")[0].split() == ["JOB_ID", "PLUGIN", "COMMAND", "STATUS", "ATTEMPT",
                                                  "SUBMITTED_BY", "CREATED"]
    assert all(line.split()[3] == "failed" for line in human.stdout.strip().splitlines()[1:])


# --- system rebuild (cli.md §2.2) --------------------------------------------------------------

LEDGER_TABLES = {"job_queue": "job_id", "job_log": "id", "job_transitions": "id", "job_attempts": "id"}


def test_system_rebuild_refuses_while_running_then_rebuilds_identical_tables(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    for mode in ("ok", "error_noretry", "bigerr"):
        gw.wait_job(gw.trigger("behave", payload={"mode": mode, "state_updates": {"m": mode}}))
    running = gw.cli("system", "rebuild", "--config", str(gw.root), "--json")
    assert running.returncode == 1
    assert "failed to acquire PID lock" in running.stderr
    assert json.loads(running.stdout)["error"].startswith("failed to acquire PID lock")
    assert gw.stop() == 0

    before = {name: gw.table(name, order) for name, order in LEDGER_TABLES.items()}
    assert len(before["job_queue"]) == 3 and len(before["job_log"]) == 3
    proc = gw.cli("system", "rebuild", "--config", str(gw.root), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    with gw.db() as db:
        assert report["position"] == db.execute("SELECT MAX(position) FROM events").fetchone()[0]
    names = [p["name"] for p in report["projections"]]
    assert {"queue", "ledger"} <= set(names)
    for p in report["projections"]:
        assert set(p) == {"name", "version", "events_applied", "seconds"}
    after = {name: gw.table(name, order) for name, order in LEDGER_TABLES.items()}
    for name in LEDGER_TABLES:
        assert after[name] == before[name], f"{name} differs after rebuild"

    human = gw.cli("system", "rebuild", "--config", str(gw.root), "--projection", "queue")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0].split() == ["PROJECTION", "VERSION", "EVENTS", "SECONDS"]
    assert [line.split()[0] for line in human.stdout.splitlines()[1:-1]] == ["queue"]
    assert re.match(rf"^rebuilt 1 projection\(s\) to position {report['position']} in [\d.]+s$",
                    human.stdout.splitlines()[-1])
    assert gw.table("job_queue", "job_id") == before["job_queue"]
    # The gateway starts on the rebuilt DB and still serves the jobs.
    gw.start()
    assert httpx.get(f"{gw.url}/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).json()["total"] == 3


def test_system_rebuild_unknown_projection_names_the_known_ones(gateway: Any) -> None:
    gw = gateway(PLUGINS, start=False)
    proc = gw.cli("system", "rebuild", "--config", str(gw.root), "--projection", "nope")
    assert proc.returncode == 1
    m = re.fullmatch(r'error: unknown projection "nope" \(known: (.+)\)', proc.stderr.strip())
    assert m, proc.stderr
    assert {"queue", "ledger", "plugin_state"} <= {n.strip() for n in m.group(1).split(",")}
    assert_no_traceback(proc)
