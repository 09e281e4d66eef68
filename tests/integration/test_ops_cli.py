"""The operator's verbs against a real gateway (operations.md §4, §6; plugins.md §8): plugin-facts
after real jobs appended facts, status up and down, doctor and GET /system/doctor while it runs, and
stop (also on a stopped gateway, and on a lock holder that ignores SIGTERM). One daemon for the
module; the tests run in file order and the last ones stop it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.integration.daemon import Daemon, call, wait_until

FACT_MANIFEST = """\
    manifest_spec: ductile.plugin
    manifest_version: 1
    name: factful
    version: "0.1"
    protocol: 2
    entrypoint: run.py
    description: Records payload.reading as a fact (test plugin).
    commands:
      - name: poll
        type: write
      - name: probe
        type: read
    fact_outputs:
      - {when: {command: poll}, from: state_updates, fact_type: reading}
    """
FACT_RUN = """\
    #!/usr/bin/env python3
    import json, sys
    request = json.loads(sys.stdin.read())
    payload = request.get("payload") or {}
    sys.stdout.write(json.dumps({"status": "ok", "result": "noted", "state_updates": payload.get("reading", {})}))
    """


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("ops")
    plugin = root / "plugins" / "factful"
    plugin.mkdir(parents=True)
    (plugin / "manifest.yaml").write_text(textwrap.dedent(FACT_MANIFEST))
    (plugin / "run.py").write_text(textwrap.dedent(FACT_RUN))
    (plugin / "run.py").chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))
        mp.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
        d = Daemon(root / "gw", plugins={"factful": {"enabled": True}}, plugin_roots=[str(root / "plugins")])
        try:
            yield d.start()
        finally:
            d.close()


def cli(gw: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return gw.cli(*args, "--config", str(gw.root))


def test_plugin_facts_lists_the_appended_facts_newest_first(gw: Daemon) -> None:
    for n in (1, 2, 3):
        job = gw.trigger("factful", "poll", {"reading": {"celsius": 20 + n}})
        assert gw.wait_job(job)["status"] == "succeeded"
    done = cli(gw, "system", "plugin-facts", "factful", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"plugin", "facts"} and body["plugin"] == "factful"
    assert [f["seq"] for f in body["facts"]] == [3, 2, 1]
    newest = body["facts"][0]
    assert set(newest) == {"id", "seq", "plugin", "fact_type", "job_id", "command", "fact", "created_at"}
    assert (newest["plugin"], newest["fact_type"], newest["command"], newest["fact"]) == (
        "factful", "reading", "poll", {"celsius": 23})

    limited = json.loads(cli(gw, "system", "plugin-facts", "factful", "--fact-type", "reading", "--limit", "1",
                             "--json").stdout)
    assert limited["fact_type"] == "reading" and [f["seq"] for f in limited["facts"]] == [3]
    other = json.loads(cli(gw, "system", "plugin-facts", "factful", "--fact-type", "other", "--json").stdout)
    assert other == {"plugin": "factful", "fact_type": "other", "facts": []}

    human = cli(gw, "system", "plugin-facts", "factful", "--limit", "2")
    lines = human.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "FACT_TYPE", "COMMAND", "JOB", "CREATED", "FACT"]
    assert lines[1].split()[:4] == ["3", "reading", "poll", newest["job_id"]]
    assert lines[1].endswith('{"celsius":23}') and len(lines) == 3


def test_plugin_facts_refuses_an_unknown_plugin_and_a_bad_limit(gw: Daemon) -> None:
    unknown = cli(gw, "system", "plugin-facts", "nosuch", "--json")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout) == {"error": "plugin not found: nosuch"}
    assert unknown.stderr.strip() == "error: plugin not found: nosuch"
    bad = cli(gw, "system", "plugin-facts", "factful", "--limit", "0")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: --limit must be > 0"


def test_status_is_healthy_with_the_posture_in_health(gw: Daemon) -> None:
    done = cli(gw, "system", "status", "--json")
    assert done.returncode == 0, done.stdout
    body = json.loads(done.stdout)
    assert body["healthy"] is True
    assert [c["name"] for c in body["checks"]] == ["config_discovery", "config_load", "state_db", "pid_lock", "health"]
    lock = body["checks"][3]
    assert lock["ok"] is True and lock["active_pid"] == gw.proc.pid  # type: ignore[union-attr]
    assert body["health"]["posture"] == "gateway" and body["health"]["status"] == "ok"
    human = cli(gw, "system", "status")
    assert human.returncode == 0
    assert human.stdout.splitlines()[0] == "System Status: HEALTHY"
    assert f"- pid_lock: OK (path={gw.root / 'data' / 'ductile.pid'}) - held by pid {gw.proc.pid}" in human.stdout  # type: ignore[union-attr]


def test_doctor_and_the_api_report_the_running_gateway_and_the_event_log_head(gw: Daemon) -> None:
    done = cli(gw, "system", "doctor", "--json")
    body = json.loads(done.stdout)
    info = {(f["category"], f["message"]) for f in body["info"]}
    assert ("gateway", f"gateway running (pid {gw.proc.pid})") in info  # type: ignore[union-attr]
    assert ("plugins", "1 plugin(s) loaded: factful") in info
    assert any(c == "state_db" and m.startswith("event log head ") for c, m in info)
    assert done.returncode == (1 if body["errors"] else 0)
    api = call(gw, "GET", "/system/doctor").json()
    details = {c.get("detail") for c in api["checks"]}
    assert f"gateway running (pid {gw.proc.pid})" in details  # type: ignore[union-attr]
    assert "1 plugin(s) loaded: factful" in details
    assert {c["detail"] for c in api["checks"] if not c["ok"]} == {f["message"] for f in body["errors"] + body["warnings"]}


def test_stop_stops_the_gateway_then_reports_it_is_not_running(gw: Daemon) -> None:
    pid = gw.proc.pid  # type: ignore[union-attr]
    done = cli(gw, "system", "stop", "--timeout", "30s")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"gateway stopped (pid {pid})\n"
    assert gw.proc.wait(timeout=10) == 0  # type: ignore[union-attr]
    again = cli(gw, "system", "stop")
    assert (again.returncode, again.stdout) == (0, "gateway is not running\n")
    assert json.loads(cli(gw, "system", "stop", "--json").stdout) == {"status": "not_running"}


def test_status_of_a_stopped_gateway_exits_1_with_the_lock_check_failing(gw: Daemon) -> None:
    done = cli(gw, "system", "status", "--json")
    assert done.returncode == 1
    body = json.loads(done.stdout)
    assert body["healthy"] is False and "health" not in body
    lock = next(c for c in body["checks"] if c["name"] == "pid_lock")
    assert lock == {"name": "pid_lock", "ok": False, "path": str(gw.root / "data" / "ductile.pid"),
                    "detail": "gateway is not running"}
    human = cli(gw, "system", "status")
    assert human.stdout.splitlines()[0] == "System Status: DEGRADED"
    # plugin-facts reads the log with the gateway stopped too
    assert [f["seq"] for f in json.loads(cli(gw, "system", "plugin-facts", "factful", "--json").stdout)["facts"]] == [3, 2, 1]


HOLDER = """\
import signal, sys, time
from pathlib import Path
from ductile.system.pidlock import PidLock
signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock = PidLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_stop_gives_up_after_the_timeout_when_the_holder_ignores_sigterm(gw: Daemon) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(gw.root / "data" / "ductile.pid")],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        done = cli(gw, "system", "stop", "--timeout", "1s", "--json")
        assert done.returncode == 1
        message = f"gateway still running after 1s (pid {holder.pid})"
        assert json.loads(done.stdout) == {"status": "timeout", "pid": holder.pid, "error": message}
        assert done.stderr.strip() == f"error: {message}"
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: cli(gw, "system", "stop").stdout == "gateway is not running\n", 10, what="the lock to free")
