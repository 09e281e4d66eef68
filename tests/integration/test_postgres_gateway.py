"""A gateway on ``state.url`` (issue 17, one node): the real daemon with its log on the test
PostgreSQL server runs jobs end to end through the real API and real plugins, the read verbs and
``system selfcheck`` work on it, and the store URL's password is never shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ductile.events.log import read_head, verify_chain
from ductile.events.postgres_store import PostgresStore
from tests.integration.daemon import TOKEN, Daemon, free_port
from tests.integration.sse import SseReader

FAST_RETRY = {"max_attempts": 3, "backoff_base": "100ms"}
PASSWORD = "pg-seam-pass"  # the test server trusts local connections: any password is accepted


@pytest.fixture
def pg_gateway(tmp_path: Path, pg_url: str) -> Any:
    url = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    gw = Daemon(tmp_path / "gw", {"behave": {"enabled": True, "retry": FAST_RETRY}, "shellok": {"enabled": True}})
    gw.config["state"] = {"url": url}
    gw.write_config()
    try:
        yield gw, PostgresStore(url)
    finally:
        gw.close()


def test_a_gateway_on_state_url_runs_jobs_and_selfcheck_is_green(pg_gateway: Any) -> None:
    gw, store = pg_gateway
    gw.start()
    ok = [gw.trigger("behave", payload={"mode": "ok", "result": f"r{i}"}) for i in range(6)]
    retried = gw.trigger("behave", payload={"mode": "fail_then_ok", "fail_times": 1,
                                            "counter": str(gw.root / "counter")})
    shell = gw.trigger("shellok")
    for job_id in ok:
        job = gw.wait_job(job_id)
        assert job["status"] == "succeeded", job
    assert gw.wait_job(retried)["status"] == "succeeded"
    assert gw.wait_job(retried)["attempt"] == 2
    assert gw.wait_job(shell)["status"] == "succeeded"
    assert not gw.state_db.exists()  # the log is on the server, not in a file beside the config

    status = gw.cli("system", "status", "--json", "--config", str(gw.root))
    assert status.returncode == 0, status.stderr
    state_db = next(c for c in json.loads(status.stdout)["checks"] if c["name"] == "state_db")
    assert state_db["ok"] and state_db["detail"].startswith("event log position ")
    inspect = gw.cli("job", "inspect", ok[0], "--json", "--config", str(gw.root))
    assert inspect.returncode == 0, inspect.stderr
    assert ok[0] in inspect.stdout
    shown = gw.cli("config", "show", "--config", str(gw.root))
    assert shown.returncode == 0, shown.stderr
    assert "postgres:***@" in shown.stdout
    # The event stream follows the log on the server: positions are frame ids, and Last-Event-ID
    # resumes with exactly the later frames.
    stream = SseReader(f"{gw.url}/events", {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": "0"})
    try:
        frames = stream.wait_for(lambda fs: sum(f.get("event") == "job.completed" for f in fs) >= 7)
    finally:
        stream.close()
    ids = [int(f["id"]) for f in frames if "id" in f]
    assert ids == sorted(ids) and ids[0] >= 1
    later = gw.trigger("shellok")
    assert gw.wait_job(later)["status"] == "succeeded"
    resumed = SseReader(f"{gw.url}/events", {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": str(ids[-1])})
    try:
        got = resumed.wait_for(lambda fs: any(f.get("data", {}).get("job_id") == later
                                              and f.get("event") == "job.completed" for f in fs))
    finally:
        resumed.close()
    assert all(int(f["id"]) > ids[-1] for f in got if "id" in f)
    # Every read route's queries run on the server (the readers' SQL, translated or per dialect).
    for path in ("/jobs", f"/job/{ok[0]}", f"/job/{ok[0]}/tree", "/job-logs", "/analytics/queue",
                 "/analytics/summary", "/plugins", "/plugin/behave", "/scheduler/jobs", "/stopwatch/behave",
                 "/system/doctor", "/metrics", "/topology"):
        answer = gw.client.get(path)
        assert answer.status_code == 200, (path, answer.text)
    online = gw.client.get("/system/selfcheck")
    assert online.status_code == 200, online.text
    assert {c["name"]: c["status"] for c in online.json()["checks"]}["projection_replay"] == "ok"

    assert gw.stop() == 0
    rebuilt = gw.cli("system", "rebuild", "--json", "--config", str(gw.root))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["position"] > 0
    check = gw.cli("system", "selfcheck", "--json", "--config", str(gw.root))
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["healthy"], [c for c in report["checks"] if not c["ok"]]
    assert {c["name"]: c["status"] for c in report["checks"]}["projection_replay"] == "ok"
    conn = store.reader()
    try:
        assert verify_chain(conn).ok
        assert read_head(conn) > 0
    finally:
        conn.close()
    everything = gw.log_text() + status.stdout + status.stderr + check.stdout + check.stderr + shown.stdout
    assert PASSWORD not in everything


def test_file_only_verbs_refuse_a_postgres_store_in_one_line(pg_gateway: Any) -> None:
    gw, _ = pg_gateway
    backup = gw.cli("system", "backup", "--to", str(gw.root / "b.tar.gz"), "--scope", "db", "--config", str(gw.root))
    assert backup.returncode != 0
    assert "system backup: not supported with state.url yet; use pg_dump" in backup.stderr
    assert "Traceback" not in backup.stderr


def test_an_unreachable_server_fails_the_start_in_one_line_without_the_password(tmp_path: Path) -> None:
    gw = Daemon(tmp_path / "gw", {})
    gw.config["state"] = {"url": f"postgresql://ductile:{PASSWORD}@127.0.0.1:{free_port()}/ductile"}
    gw.write_config()
    try:
        gw.start(wait=False)
        assert gw.proc is not None
        assert gw.proc.wait(60) == 1
        text = gw.log_text()
        assert "cannot connect to the event store postgresql://ductile:***@127.0.0.1:" in text
        assert PASSWORD not in text
        assert "Traceback" not in text
    finally:
        gw.close()
