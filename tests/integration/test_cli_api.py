"""``ductile api``, ``skills``, ``system status|stop|reload`` and ``plugin show`` as subprocesses
against a real daemon (cli.md §1, §2.1, §2.2, §2.4, §2.6; operations.md §4)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ductile.system.pidlock import holder
from tests.integration.daemon import REPO, TOKEN, Daemon, free_port, wait_until

PLUGINS = {"behave": {"enabled": True, "retry": {"max_attempts": 1}}, "catlike": {"enabled": True}}
NO_KEY = {"DUCTILE_API_KEY": ""}


def ductile(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def assert_one_error_line(proc: subprocess.CompletedProcess[str], line: str) -> None:
    assert proc.stderr.splitlines() == [line], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("cliapi") / "gw", PLUGINS)
    d.start()
    yield d
    d.close()


def api(gw: Daemon, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return ductile("api", *args, "--config", str(gw.root), cwd=gw.root, env=env, stdin=stdin)


def payload_of(gw: Daemon, job_id: str) -> Any:
    proc = gw.cli("job", "inspect", job_id, "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["job"]["payload"]


# --- ductile api (cli.md §2.6) -----------------------------------------------------------------

def test_api_healthz_needs_no_key_and_prints_indented_json(gw: Daemon) -> None:
    proc = api(gw, "/healthz", env=NO_KEY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('{\n  "status": "ok"'), proc.stdout
    assert json.loads(proc.stdout)["status"] == "ok"
    assert proc.stderr == ""


def test_api_url_comes_from_api_listen_in_the_config_or_the_flag(gw: Daemon) -> None:
    by_env = ductile("api", "/healthz", cwd=gw.root, env={"DUCTILE_CONFIG_DIR": str(gw.root), **NO_KEY})
    assert by_env.returncode == 0, by_env.stderr
    by_flag = ductile("api", "/healthz", "--api-url", gw.url, cwd=REPO, env=NO_KEY)
    assert by_flag.returncode == 0, by_flag.stderr


def test_api_get_with_fields_sends_them_as_query_parameters(gw: Daemon) -> None:
    for _ in range(2):
        gw.wait_job(gw.trigger("behave"))
    proc = api(gw, "/jobs", "-X", "GET", "-f", "limit=1", "--json", env={"DUCTILE_API_KEY": TOKEN})
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert len(body["jobs"]) == 1 and body["total"] >= 2
    assert body == gw.client.get("/jobs", params={"limit": 1}).json()


def test_api_fields_without_a_method_are_a_post_and_a_405_says_how_to_get(gw: Daemon) -> None:
    proc = api(gw, "/jobs", "-f", "limit=1", "--api-key", TOKEN)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"error": "method not allowed"}, "the error body is still printed"
    assert_one_error_line(proc, "error: POST /jobs failed (405): method not allowed"
                                " (use -X GET to send -f fields as query parameters)")


def test_api_plugin_trigger_with_a_payload_field_queues_one_job(gw: Daemon) -> None:
    proc = api(gw, "/plugin/behave/poll", "-X", "POST", "-f", 'payload={"mode":"ok"}', "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["status"] == "queued" and (body["plugin"], body["command"]) == ("behave", "poll")
    job = gw.wait_job(body["job_id"])
    assert (job["status"], job["submitted_by"]) == ("succeeded", "api")
    assert payload_of(gw, body["job_id"]) == {"mode": "ok"}


def test_api_plain_fields_go_under_payload_for_a_plugin_trigger(gw: Daemon) -> None:
    proc = api(gw, "/plugin/behave/poll", "-f", "mode=ok", "-f", "n=7", "-f", "deep.flag=true", "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["job_id"]
    gw.wait_job(job_id)
    assert payload_of(gw, job_id) == {"mode": "ok", "n": 7, "deep": {"flag": True}}


def test_api_body_from_argv_a_file_or_stdin(gw: Daemon, tmp_path: Path) -> None:
    key = {"DUCTILE_API_KEY": TOKEN}
    inline = api(gw, "/plugin/behave/poll", "-b", '{"payload": {"from": "argv"}}', env=key)
    body_file = tmp_path / "body.json"
    body_file.write_text('{"payload": {"from": "file"}}')
    from_file = api(gw, "/plugin/behave/poll", "-b", f"@{body_file}", env=key)
    from_stdin = api(gw, "/plugin/behave/poll", "-b", "-", env=key, stdin='{"payload": {"from": "stdin"}}')
    for proc, source in ((inline, "argv"), (from_file, "file"), (from_stdin, "stdin")):
        assert proc.returncode == 0, (source, proc.stderr)
        job_id = json.loads(proc.stdout)["job_id"]
        gw.wait_job(job_id)
        assert payload_of(gw, job_id) == {"from": source}


def test_api_without_a_key_gets_401_and_exits_1(gw: Daemon) -> None:
    proc = api(gw, "/jobs", env=NO_KEY)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"error": "missing or invalid Authorization header"}
    assert_one_error_line(proc, "error: GET /jobs failed (401): missing or invalid Authorization header")
    wrong = api(gw, "/plugin/behave/poll", "-X", "POST", "--api-key", "not-the-token")
    assert wrong.returncode == 1
    assert_one_error_line(wrong, "error: POST /plugin/behave/poll failed (401): invalid token")


def test_api_key_from_the_environment_and_headers_are_sent(gw: Daemon) -> None:
    proc = api(gw, "/plugins", "-H", "X-Request-ID: cli-api-test", env={"DUCTILE_API_KEY": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == gw.client.get("/plugins").json()
    wait_until(lambda: any(line.get("request_id") == "cli-api-test" for line in gw.log_lines()), 5,
               what="the request id in the access log")


def test_api_unknown_route_prints_the_body_and_exits_1(gw: Daemon) -> None:
    proc = api(gw, "/no/such/route", "--api-key", TOKEN)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"error": "not found"}
    assert_one_error_line(proc, "error: GET /no/such/route failed (404): not found")


def test_api_non_json_bodies_are_printed_as_text_or_a_json_string(gw: Daemon) -> None:
    text = api(gw, "/metrics", "--api-key", TOKEN)
    assert text.returncode == 0, text.stderr
    assert "ductile_queue_depth" in text.stdout
    as_json = api(gw, "/metrics", "--api-key", TOKEN, "--json")
    assert as_json.returncode == 0
    exposition = json.loads(as_json.stdout)  # one JSON string (the counters move between the two calls)
    assert isinstance(exposition, str) and exposition.startswith("# HELP ")
    assert "ductile_queue_depth" in exposition


def test_api_command_line_errors_exit_2_in_one_line(gw: Daemon) -> None:
    both = api(gw, "/plugin/behave/poll", "-b", "{}", "-f", "a=1")
    assert both.returncode == 2
    assert_one_error_line(both, "error: use only one of -b/--body or -f/--field")
    bad_field = api(gw, "/plugin/behave/poll", "-f", "novalue")
    assert bad_field.returncode == 2
    assert_one_error_line(bad_field, "error: -f expects key=value (got 'novalue')")
    bad_header = api(gw, "/healthz", "-H", "nocolon")
    assert bad_header.returncode == 2
    assert_one_error_line(bad_header, "error: -H expects 'Name: value' (got 'nocolon')")


def test_api_refuses_non_local_hosts_and_reports_an_unreachable_gateway() -> None:
    remote = ductile("api", "/healthz", "--api-url", "http://8.8.8.8:8080", env={"DUCTILE_API_KEY": TOKEN})
    assert remote.returncode == 1
    assert_one_error_line(remote, "error: refusing to send credentials to non-local host 8.8.8.8")
    url = f"http://127.0.0.1:{free_port()}"
    down = ductile("api", "/healthz", "--api-url", url, "--json", env=NO_KEY)
    assert down.returncode == 1
    (line,) = down.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the gateway at {url}: ")
    assert line.endswith("(is it running? try 'ductile system status')")
    assert json.loads(down.stdout) == {"error": line.removeprefix("error: ")}


def test_bare_api_prints_usage_to_stderr_and_exits_2() -> None:
    proc = ductile("api")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert "Usage" in proc.stderr


# --- skills (cli.md §2.1) ----------------------------------------------------------------------

def test_skills_lists_the_enabled_plugin_commands_one_line_each(gw: Daemon) -> None:
    proc = ductile("skills", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "# Ductile Gateway: LLM Operator Skill Manifest"
    assert "## CLI" in lines and "## Plugins" in lines and "## Pipelines" in lines
    assert any("ductile api <endpoint>" in line for line in lines)
    skill_lines = [line for line in lines if " m=POST p=/plugin/" in line]
    assert skill_lines == [
        "behave.custom_cmd m=POST p=/plugin/behave/custom_cmd tier=WRITE mut=1 idem=0 retry=0",
        "behave.handle m=POST p=/plugin/behave/handle tier=WRITE mut=1 idem=0 retry=0",
        "behave.poll m=POST p=/plugin/behave/poll tier=READ mut=0 idem=1 retry=1",
        "catlike.poll m=POST p=/plugin/catlike/poll tier=READ mut=0 idem=1 retry=1",
    ]
    assert "Behaves as the payload asks (test plugin)." in lines
    assert ductile("system", "skills", "--config", str(gw.root)).stdout == proc.stdout


def test_skills_json_has_the_skills_route_shape(gw: Daemon) -> None:
    proc = ductile("skills", "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    skills = json.loads(proc.stdout)["skills"]
    assert [s["name"] for s in skills] == ["plugin.behave.custom_cmd", "plugin.behave.handle", "plugin.behave.poll",
                                           "plugin.catlike.poll"]
    assert skills[2] == {"name": "plugin.behave.poll", "kind": "plugin", "endpoint": "/plugin/behave/poll",
                         "tier": "READ", "plugin": "behave", "command": "poll"}
    route = gw.client.get("/skills")
    if route.status_code == 200:
        assert json.loads(proc.stdout) == route.json()


def test_skills_lists_configured_pipelines(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "gw", {"behave": {"enabled": True}})
    d.config["pipelines"] = [
        {"name": "intake", "on": "intake.requested", "execution_mode": "synchronous", "timeout": "45s",
         "steps": [{"uses": "behave"}]},
        {"name": "audit", "on": "behave.done", "steps": [{"uses": "behave"}]},
    ]
    d.write_config()
    proc = ductile("skills", "--config", str(d.root))
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if " p=/pipeline/" in line] == [
        'audit m=POST p=/pipeline/audit trigger="behave.done" mode=async',
        'intake m=POST p=/pipeline/intake trigger="intake.requested" mode=sync timeout=45s',
    ]
    pipelines = [s for s in json.loads(ductile("skills", "--json", "--config", str(d.root)).stdout)["skills"]
                 if s["kind"] == "pipeline"]
    assert pipelines[1] == {"name": "pipeline.intake", "kind": "pipeline", "endpoint": "/pipeline/intake",
                            "pipeline": "intake", "trigger": "intake.requested", "execution_mode": "synchronous",
                            "timeout_secs": 45}


def test_skills_without_a_config_prints_the_core_mode_template(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "DUCTILE_CONFIG_DIR": ""}
    if Path("/etc/ductile").exists():
        pytest.skip("/etc/ductile exists on this machine, so a config is always discovered")
    proc = ductile("skills", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Ductile Gateway: LLM Operator Skill Manifest\n")
    assert "Core mode" in proc.stdout and " m=POST " not in proc.stdout
    assert json.loads(ductile("skills", "--json", env=env).stdout) == {"skills": []}
    broken = ductile("skills", "--config", str(tmp_path / "missing"))
    assert broken.returncode == 1
    assert_one_error_line(broken, f"config error: config file not found: {tmp_path / 'missing'}")


# --- plugin show (cli.md §2.4) -----------------------------------------------------------------

def skip_without_plugin_route(gw: Daemon) -> None:
    resp = gw.client.get("/plugin/no-such-plugin")
    if resp.status_code == 404 and resp.json() == {"error": "not found"}:
        pytest.skip("GET /plugin/{name} is not served by this gateway yet (404 'not found', the route is missing)")


def test_plugin_show_prints_header_description_and_commands(gw: Daemon) -> None:
    skip_without_plugin_route(gw)
    proc = gw.cli("plugin", "show", "behave", "--api-url", gw.url, "--api-key", TOKEN)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["behave 0.1 (protocol 2)", "Behaves as the payload asks (test plugin)."]
    table = [line.split() for line in lines[2:] if line.strip()]
    assert table == [["COMMAND", "TYPE", "DESCRIPTION"], ["poll", "read", "-"], ["handle", "write", "-"],
                     ["custom_cmd", "write", "-"]]
    as_json = gw.cli("plugin", "show", "behave", "--json", "--api-url", gw.url, "--api-key", TOKEN)
    assert json.loads(as_json.stdout) == gw.client.get("/plugin/behave").json()


def test_plugin_show_unknown_plugin_exits_1(gw: Daemon) -> None:
    skip_without_plugin_route(gw)
    proc = gw.cli("plugin", "show", "nope", "--api-url", gw.url, "--api-key", TOKEN)
    assert proc.returncode == 1
    assert_one_error_line(proc, "error: plugin not found")
    as_json = gw.cli("plugin", "show", "nope", "--json", "--api-url", gw.url, "--api-key", TOKEN)
    assert json.loads(as_json.stdout) == {"error": "plugin not found"}


# --- system status / stop / reload (operations.md §4) -----------------------------------------

def status(gw: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return gw.cli("system", "status", "--config", str(gw.root), *args)


def test_status_is_healthy_while_running_and_degraded_after_stop(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True}})
    assert gw.proc is not None
    proc = status(gw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "System Status: HEALTHY"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "- config_discovery", "- config_load", "- state_db", "- pid_lock", "- health"]
    assert all(": OK" in line for line in lines[1:]), lines
    report = json.loads(status(gw, "--json").stdout)
    assert report["healthy"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["pid_lock"]["active_pid"] == gw.proc.pid
    assert checks["config_discovery"]["path"] == str(gw.root / "config.yaml")
    assert report["health"]["status"] == "ok"

    assert gw.stop() == 0
    down = status(gw)
    assert down.returncode == 1
    assert down.stdout.splitlines()[0] == "System Status: DEGRADED"
    assert "- pid_lock: FAIL (path=" in down.stdout and "gateway is not running" in down.stdout
    report = json.loads(status(gw, "--json").stdout)
    assert report["healthy"] is False and "health" not in report
    assert {c["name"]: c["ok"] for c in report["checks"]} == {
        "config_discovery": True, "config_load": True, "state_db": True, "pid_lock": False, "health": False}


def test_stop_stops_the_running_gateway_and_then_reports_not_running(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True}})
    assert gw.proc is not None
    pid = gw.proc.pid
    proc = gw.cli("system", "stop", "--config", str(gw.root))
    assert (proc.returncode, proc.stdout) == (0, f"gateway stopped (pid {pid})\n"), proc.stderr
    assert gw.proc.wait(timeout=10) == 0, "a graceful stop"
    assert holder(gw.root / "data" / "ductile.pid") is None, "the lock is released"
    again = gw.cli("system", "stop", "--config", str(gw.root))
    assert (again.returncode, again.stdout) == (0, "gateway is not running\n")
    as_json = gw.cli("system", "stop", "--config", str(gw.root), "--json")
    assert json.loads(as_json.stdout) == {"status": "not_running"}


def test_stop_json_reports_the_stopped_pid(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True}})
    assert gw.proc is not None
    proc = gw.cli("system", "stop", "--config", str(gw.root), "--json", "--timeout", "30s")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"status": "stopped", "pid": gw.proc.pid}


HOLD_LOCK_IGNORING_SIGTERM = """
import signal, sys, time
from pathlib import Path
from ductile.system.pidlock import PidLock
signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock = PidLock(Path(sys.argv[1])).acquire()
print("ready", flush=True)
time.sleep(120)
"""


def test_stop_times_out_when_the_holder_ignores_sigterm(gateway: Any) -> None:
    gw = gateway({}, start=False)
    lock = gw.root / "data" / "ductile.pid"
    stubborn = subprocess.Popen([sys.executable, "-c", HOLD_LOCK_IGNORING_SIGTERM, str(lock)], stdout=subprocess.PIPE,
                                text=True, cwd=REPO)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
        started = time.monotonic()
        proc = gw.cli("system", "stop", "--config", str(gw.root), "--timeout", "1s")
        assert proc.returncode == 1
        assert_one_error_line(proc, f"error: gateway still running after 1s (pid {stubborn.pid})")
        assert 1 <= time.monotonic() - started < 20
        as_json = gw.cli("system", "stop", "--config", str(gw.root), "--timeout", "0.2", "--json")
        assert as_json.returncode == 1
        assert json.loads(as_json.stdout) == {"status": "timeout", "pid": stubborn.pid,
                                              "error": f"gateway still running after 0.2s (pid {stubborn.pid})"}
        bad = gw.cli("system", "stop", "--config", str(gw.root), "--timeout", "soon")
        assert bad.returncode == 2
        assert bad.stderr.startswith('error: invalid --timeout "soon"')
    finally:
        stubborn.kill()
        stubborn.wait()


def test_reload_signals_the_gateway_and_reports_the_outcome(gateway: Any) -> None:
    gw = gateway({"behave": {"enabled": True}})
    assert gw.proc is not None
    proc = gw.cli("system", "reload", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Reloaded at ")
    assert gw.proc.poll() is None and gw.client.get("/healthz").status_code == 200, "SIGHUP does not stop it"
    over_api = gw.cli("system", "reload", "--api-url", gw.url, "--api-key", TOKEN)
    assert over_api.returncode == 0, over_api.stderr
    assert over_api.stdout.startswith("Reloaded at ")
    assert gw.stop() == 0
    down = gw.cli("system", "reload", "--config", str(gw.root))
    assert down.returncode == 1
    assert_one_error_line(down, "error: gateway is not running")


# --- grammar (cli.md §1) -----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("api",), ("skills",), ("system", "skills"), ("system", "status"), ("system", "stop"), ("system", "reload"),
    ("plugin", "show"), ("system",), ("plugin",), ("job",), ("version",), ("relay",), ("relay", "send"),
])
def test_help_for_every_new_noun_and_verb_exits_0(args: tuple[str, ...]) -> None:
    for spelling in ("--help", "-h", "help"):
        proc = ductile(*args, spelling)
        assert proc.returncode == 0, (args, spelling, proc.stderr)
        assert "Usage" in proc.stdout, (args, spelling)


def test_version_does_not_import_the_web_stack_or_the_http_client() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ductile.cli.main", "version"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "ductile.cli.output" in imported, "importtime output expected"
    heavy = {m for m in imported if m.split(".")[0] in {"litestar", "uvicorn", "httpx", "httpcore"}}
    assert not heavy, heavy


def test_sigint_while_streaming_events_exits_130(gw: Daemon) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ductile.cli.main", "api", "/events", "--api-url", gw.url,
                             "--api-key", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    seen = b""
    try:
        # The stream shows live frames only: keep running jobs until one reaches it (a loaded machine
        # can start the CLI after the first job has already completed).
        deadline = time.monotonic() + 30
        while b"event: job.completed" not in seen and time.monotonic() < deadline:
            gw.wait_job(gw.trigger("behave"))
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen += os.read(proc.stdout.fileno(), 1 << 16)
        proc.send_signal(signal.SIGINT)
        rest, err_bytes = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = (seen + rest).decode(), err_bytes.decode()
    assert proc.returncode == 130, err
    assert "event: job.completed" in out
    assert "Traceback" not in err
