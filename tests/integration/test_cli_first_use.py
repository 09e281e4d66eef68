"""What a first use found (issue 9): closed pipes, ``--json`` config errors, relay, state DB files,
interpolated values in ``/config/view`` and the config snapshot."""

from __future__ import annotations

import copy
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.daemon import REPO, Daemon, wait_until

PLUGINS = {"behave": {"enabled": True, "retry": {"max_attempts": 1}}}
CANARY = "canary-7f3a9c1e"  # an environment value under keys that do not look secret
DSN_PASSWORD = "pw-5d2b8e"


ENV = {"DUCTILE_TEST_CANARY": CANARY, "DUCTILE_TEST_DSN_PASSWORD": DSN_PASSWORD}


def into_closed_pipe(*args: str, cwd: Path = REPO) -> tuple[int, str]:
    """Run the CLI with stdout a pipe whose reader is already gone (``ductile … | head`` once head exited)."""
    proc = subprocess.Popen([sys.executable, "-m", "ductile.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env={**os.environ, **ENV})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    try:
        stderr = proc.stderr.read().decode()
        return proc.wait(timeout=30), stderr
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("first-use") / "gw", copy.deepcopy(PLUGINS))
    d.config["plugins"]["behave"]["config"] = {
        "endpoint": "https://hooks.example/${DUCTILE_TEST_CANARY}",
        "dsn": "postgres://app:${DUCTILE_TEST_DSN_PASSWORD}@db/app",
        "label": "plain",
    }
    d.config["service"]["name"] = "${DUCTILE_TEST_CANARY}"
    d.write_config()
    os.environ.update(ENV)  # the daemon inherits the test's environment
    try:
        d.start()
    finally:
        for name in ENV:
            del os.environ[name]
    yield d
    d.close()


# --- item 11: a closed pipe ends the command quietly --------------------------------------------

def test_a_closed_stdout_ends_a_command_quietly_with_exit_0() -> None:
    code, stderr = into_closed_pipe("version")
    assert (code, stderr) == (0, "")


def test_api_events_into_a_closed_pipe_ends_quietly_with_exit_0(gw: Daemon) -> None:
    gw.trigger("behave", payload={"mode": "ok"})  # the stream opens with logged frames to write
    code, stderr = into_closed_pipe("api", "/events", "--api-url", gw.url, "--api-key", "integration-test-token",
                                    cwd=gw.root)
    assert (code, stderr) == (0, "")


def test_job_logs_into_a_closed_pipe_ends_quietly_with_exit_0(gw: Daemon) -> None:
    gw.wait_job(gw.trigger("behave", payload={"mode": "ok"}))
    code, stderr = into_closed_pipe("job", "logs", "--config", str(gw.root))
    assert (code, stderr) == (0, "")


# --- item 12: --json puts a config error on stdout ------------------------------------------------

@pytest.mark.parametrize("argv", [("job", "list"), ("job", "logs"), ("system", "scheduler"),
                                  ("system", "stop"), ("system", "rebuild")])
def test_a_config_error_with_json_is_one_error_document_on_stdout(tmp_path: Path, argv: tuple[str, ...]) -> None:
    (tmp_path / "config.yaml").write_text("plugin_roots: [missing]\n")
    proc = subprocess.run([sys.executable, "-m", "ductile.cli.main", *argv, "--config", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    message = f"plugin_roots[0]: {tmp_path / 'missing'} is not a directory"
    assert message in proc.stderr and proc.stderr.startswith("config error: ")
    assert json.loads(proc.stdout) == {"error": proc.stderr.strip().removeprefix("config error: ")}


# --- item 13: relay ---------------------------------------------------------------------------------

def test_relay_send_is_not_available_in_this_release(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "ductile.cli.main", "relay", "send", "peer1", "--event", "x.y"]
    human = subprocess.run(base, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (human.returncode, human.stdout, human.stderr) == (1, "", "error: relay is not available in this release\n")
    as_json = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {"error": "relay is not available in this release"}
    bare = subprocess.run(base[:4], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bare.returncode == 2 and "send" in bare.stderr


def test_a_relay_step_to_an_unknown_instance_refuses_the_config(gateway: Any) -> None:
    gw = gateway(PLUGINS, start=False)
    gw.config["pipelines"] = [{"name": "out", "on": "x.y", "steps": [{"id": "r", "relay": {"to": "ghost", "event": "x"}}]}]
    gw.config["instances"] = [{"name": "peer1", "enabled": True, "base_url": "http://127.0.0.1:9"}]
    gw.write_config()
    proc = gw.cli("system", "start", "--config", str(gw.root), timeout=30)
    assert proc.returncode == 1
    assert 'pipeline "out" step "r": relay.to "ghost": unknown relay instance' in proc.stderr


# --- item 16: the state DB files --------------------------------------------------------------------

def test_state_db_wal_and_shm_are_private_even_in_an_open_state_dir(gateway: Any) -> None:
    gw = gateway(PLUGINS, start=False)
    gw.state_db.parent.mkdir(parents=True)
    gw.state_db.parent.chmod(0o755)
    gw.start()
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{gw.state_db}{suffix}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_zero_length_state_db_is_refused_and_left_untouched(gateway: Any) -> None:
    gw = gateway(PLUGINS, start=False)
    gw.state_db.parent.mkdir(parents=True)
    gw.state_db.write_bytes(b"")
    proc = gw.cli("system", "start", "--config", str(gw.root), timeout=30)
    assert proc.returncode == 1
    assert f"state database {gw.state_db} is empty (0 bytes)" in proc.stderr
    assert gw.state_db.stat().st_size == 0
    assert not Path(f"{gw.state_db}-wal").exists()


@pytest.mark.parametrize("argv", [("system", "rebuild"), ("system", "reset", "behave")])
def test_offline_writers_refuse_a_zero_length_state_db_too(gateway: Any, argv: tuple[str, ...]) -> None:
    gw = gateway(PLUGINS, start=False)
    gw.state_db.parent.mkdir(parents=True)
    gw.state_db.write_bytes(b"")
    proc = gw.cli(*argv, "--config", str(gw.root))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: state database {gw.state_db} is empty (0 bytes)"), proc.stderr
    assert gw.state_db.stat().st_size == 0


# --- item 17: interpolated values stay out of /config/view and the config snapshot -------------------

def test_config_view_redacts_interpolated_values(gw: Daemon) -> None:
    resp = gw.client.get("/config/view")
    assert resp.status_code == 200, resp.text
    assert CANARY not in resp.text and DSN_PASSWORD not in resp.text
    view = resp.json()
    assert view["plugins"]["behave"]["config"] == {"endpoint": "[REDACTED]", "dsn": "[REDACTED]", "label": "plain"}
    assert view["service"]["name"] == "[REDACTED]"


def test_the_config_snapshot_in_the_log_keeps_the_template_not_the_value(gw: Daemon) -> None:
    import msgspec

    with gw.db() as db:
        rows = db.execute("SELECT data FROM events WHERE type = 'ConfigSnapshotted'").fetchall()
    assert rows
    for (data,) in rows:
        assert CANARY.encode() not in data and DSN_PASSWORD.encode() not in data
        config = msgspec.msgpack.decode(data)["config"]
        assert config["plugins"]["behave"]["config"]["endpoint"] == "https://hooks.example/${DUCTILE_TEST_CANARY}"
        assert config["service"]["name"] == "${DUCTILE_TEST_CANARY}"


# --- item 15: the daemon helper survives a taken port --------------------------------------------

def test_the_daemon_helper_retries_on_a_new_port_when_its_port_was_taken(gateway: Any) -> None:
    gw = gateway(PLUGINS, start=False)
    taken = gw.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))  # bound, not listening: the gateway's bind fails
        gw.start()
        assert gw.port != taken
        assert gw.client.get("/healthz").status_code == 200
        assert yaml.safe_load((gw.root / "config.yaml").read_text())["api"]["listen"] == f"127.0.0.1:{gw.port}"
    wait_until(lambda: gw.client.get("/healthz").status_code == 200, 5, what="healthz on the new port")
