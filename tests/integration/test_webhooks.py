"""Webhooks (webhooks.md) with the real daemon, a real plugin and real HTTP on the listener: the check
order and its exact bodies, the job a good delivery makes (payload, event, context), the replay
guard across a restart, a rolled secret taking effect without a reload, /healthz. One daemon for
the module; each test uses its own endpoint or body so they do not see each other's jobs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ductile.webhook_signatures import sign
from tests.integration.daemon import TERMINAL, Daemon, free_port, seed_vault, wait_until

SECRET = "s3cret-webhook-key"
FORBIDDEN = {"error": "forbidden"}


class Hooks:
    def __init__(self, gw: Daemon, port: int, admin: str) -> None:
        self.gw = gw
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.admin = admin

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.url + path, content=body, headers=headers or {}, timeout=15)

    def signed(self, path: str, body: bytes, secret: str = SECRET, **extra: str) -> httpx.Response:
        return self.post(path, body, {"X-Hub-Signature-256": sign(secret, body), **extra})

    def job_seen(self, job_id: str) -> dict[str, Any]:
        job = self.gw.wait_job(job_id)
        assert job["status"] == "succeeded", json.dumps(job)
        return json.loads(job["result"]["result"])


def endpoint(path: str, **extra: Any) -> dict[str, Any]:
    return {"path": path, "plugin": "hookrecv", "secret_ref": "hook_key", "signature_header": "X-Hub-Signature-256",
            **extra}


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    root = tmp_path_factory.mktemp("webhooks") / "gw"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root.parent / "home"))
        mp.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
        gw = Daemon(root, plugins={"hookrecv": {"enabled": True, "retry": {"max_attempts": 1}},
                                   "behave": {"enabled": True, "retry": {"max_attempts": 1}, "notify_on_complete": True},
                                   "hookretry": {"enabled": True, "uses": "hookrecv", "retry": {"max_attempts": 3}},
                                   "shellok": {"enabled": False}})
        root.mkdir(parents=True, exist_ok=True)
        _, admin = seed_vault(root, {"hook_key": SECRET})
        port = free_port()
        gw.config["webhooks"] = {"listen": f"127.0.0.1:{port}", "endpoints": [
            endpoint("/hook/plain", max_body_size="64B"),
            endpoint("/hook/typed", name="typed", event_type="site.rebuild_requested",
                     timestamp_header="X-Ductile-Timestamp", timestamp_tolerance="5m"),
            endpoint("/hook/off", plugin="shellok"),
            endpoint("/hook/emit", plugin="behave"),
            endpoint("/hook/durable"),
            endpoint("/hook/kill", plugin="hookretry"),  # attempts to spare if the kill lands mid-run
        ]}
        gw.config["pipelines"] = [  # what a webhook job's emitted event and its completion start
            {"name": "after-webhook", "on": "hook.followup", "steps": [{"id": "follow", "uses": "hookrecv"}]},
            {"name": "told", "on-hook": "job.completed", "from_plugin": "behave",
             "steps": [{"id": "notified", "uses": "hookrecv"}]},
        ]
        gw.write_config()
        gw.start()
        wait_until(lambda: _listening(port), 10, what="the webhook listener")
        try:
            yield Hooks(gw, port, admin)
        finally:
            gw.close()


def _listening(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_good_signature_queues_one_handle_job_with_the_spec_payload(hooks: Hooks) -> None:
    body = b'{"ref":"main"}'
    resp = hooks.signed("/hook/plain", body)
    assert resp.status_code == 202 and resp.headers["content-type"] == "application/json"
    assert list(resp.json()) == ["job_id"]
    job_id = resp.json()["job_id"]
    seen = hooks.job_seen(job_id)
    job = hooks.gw.job(job_id)
    assert (job["plugin"], job["command"], job["submitted_by"]) == ("hookrecv", "handle", "webhook:/hook/plain")
    payload = seen["payload"]
    assert set(payload) == {"type", "payload", "source", "timestamp", "event_id"}
    assert (payload["type"], payload["payload"], payload["source"]) == (
        "webhook.received", {"ref": "main"}, "webhook:/hook/plain")
    assert seen["context"]["ductile_plugin"] == "hookrecv"
    assert seen["event"]["payload"] == {"ref": "main", "ductile_plugin": "hookrecv"}


def test_signature_forms_prefix_case_and_header_case(hooks: Hooks) -> None:
    body = b'{"n":1}'
    mac = sign(SECRET, body).removeprefix("sha256=")
    for value in (mac, mac.upper(), f"sha256={mac.upper()}"):
        assert hooks.post("/hook/plain", body, {"x-hub-SIGNATURE-256": value}).status_code == 202, value
    flipped = body.replace(b"1", b"2")
    assert hooks.post("/hook/plain", flipped, {"X-Hub-Signature-256": "sha256=" + mac}).json() == FORBIDDEN
    assert hooks.post("/hook/plain", body, {"X-Hub-Signature-256": "sha256=" + mac[:-1]}).json() == FORBIDDEN
    assert hooks.post("/hook/plain", body, {"X-Hub-Signature-256": "Sha256=" + mac}).json() == FORBIDDEN
    for missing in ({}, {"X-Hub-Signature-256": ""}):
        resp = hooks.post("/hook/plain", body, missing)
        assert (resp.status_code, resp.json()) == (403, FORBIDDEN)


def test_check_order_and_bodies(hooks: Hooks) -> None:
    resp = hooks.post("/nowhere", b"{}")
    assert (resp.status_code, resp.json()) == (404, {"error": "endpoint not found"})
    resp = hooks.post("/hook/plain/", b"{}")  # no trailing-slash folding
    assert resp.status_code == 404
    resp = httpx.get(hooks.url + "/hook/plain", timeout=10)
    assert (resp.status_code, resp.json(), resp.headers["allow"]) == (405, {"error": "method not allowed"}, "POST")
    assert resp.headers["content-type"] == "application/json"
    resp = hooks.post("/hook/off", b"{}")  # its plugin is disabled: not served
    assert (resp.status_code, resp.json()) == (404, {"error": "endpoint not found"})
    # Unsigned and oversized: the size check comes first.
    resp = hooks.post("/hook/plain", b"x" * 65)
    assert (resp.status_code, resp.json()) == (413, {"error": "payload too large"})
    exact = b'{"pad":"' + b"x" * (64 - 10) + b'"}'
    assert len(exact) == 64
    assert hooks.signed("/hook/plain", exact).status_code == 202
    resp = hooks.signed("/hook/plain", b"not json")  # validly signed, not JSON
    assert (resp.status_code, resp.json()) == (400, {"error": "invalid JSON body"})
    resp = hooks.signed("/hook/plain", b"[1]")
    assert (resp.status_code, resp.json()) == (400, {"error": "invalid JSON body"})
    assert hooks.signed("/hook/plain?x=1", b"").status_code == 202  # empty body is {}; the query is ignored
    resp = httpx.get(hooks.url + "/healthz", timeout=10)
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


def test_oversized_content_length_is_refused_before_the_body_is_read(hooks: Hooks) -> None:
    with socket.create_connection(("127.0.0.1", hooks.port), timeout=10) as sock:
        sock.sendall(b"POST /hook/plain HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        answer = b""  # no body is ever sent: the answer cannot have waited for it
        while not answer.endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b'{"error":"payload too large"}'), answer


def test_rejections_are_logged_without_body_or_signature(hooks: Hooks) -> None:
    body = b'{"canary":"BODY-CANARY-7"}'
    hooks.post("/hook/plain", body, {"X-Hub-Signature-256": "sha256=" + "ab" * 32})
    lines = [line for line in hooks.gw.log_lines() if line.get("msg") == "webhook rejected"]
    assert {"endpoint": "/hook/plain", "reason": "bad_signature"}.items() <= lines[-1].items()
    assert "remote_addr" in lines[-1]
    text = hooks.gw.log_text()
    assert "BODY-CANARY-7" not in text and "ab" * 32 not in text and SECRET not in text
    access = [line for line in hooks.gw.log_lines() if line.get("listener") == "webhooks"]
    assert access and {"method", "path", "status", "duration_ms", "request_id"} <= set(access[-1])


def test_event_type_and_envelope_bodies(hooks: Hooks) -> None:
    body = json.dumps({"type": "deploy.done", "payload": {"v": 2}, "dedupe_key": "d-1"}, separators=(",", ":")).encode()
    seen = hooks.job_seen(hooks.signed("/hook/plain", body).json()["job_id"])
    assert (seen["payload"]["type"], seen["payload"]["payload"], seen["payload"]["dedupe_key"]) == (
        "deploy.done", {"v": 2}, "d-1")
    now = str(int(time.time()))
    body = b'{"ref":"main"}'
    resp = hooks.post("/hook/typed", body, {"X-Hub-Signature-256": sign(SECRET, body, now), "X-Ductile-Timestamp": now})
    assert resp.status_code == 202, resp.text
    seen = hooks.job_seen(resp.json()["job_id"])
    assert seen["payload"]["type"] == "site.rebuild_requested" and seen["event"]["type"] == "site.rebuild_requested"


def test_timestamps_stale_future_bad_and_replay_across_a_restart(hooks: Hooks) -> None:
    body = b'{"ref":"replay"}'
    # Well past the 5m tolerance: one second over would race the clock between signing and checking.
    for sent in (str(int(time.time()) - 310), str(int(time.time()) + 310), "yesterday", ""):
        resp = hooks.post("/hook/typed", body, {"X-Hub-Signature-256": sign(SECRET, body, sent),
                                                "X-Ductile-Timestamp": sent})
        assert (resp.status_code, resp.json()) == (403, FORBIDDEN), sent
    sent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    headers = {"X-Hub-Signature-256": sign(SECRET, body, sent), "X-Ductile-Timestamp": sent}
    first = hooks.post("/hook/typed", body, headers)
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    again = hooks.post("/hook/typed", body, headers)
    assert (again.status_code, again.json()) == (409, {"error": "replayed request", "job_id": job_id})
    hooks.gw.stop()
    hooks.gw.start()
    wait_until(lambda: _listening(hooks.port), 10, what="the webhook listener after a restart")
    after = hooks.post("/hook/typed", body, headers)
    assert (after.status_code, after.json()) == (409, {"error": "replayed request", "job_id": job_id})
    jobs = hooks.gw.client.get("/jobs", params={"submitted_by": "webhook:/hook/typed", "limit": 200}).json()
    assert sum(1 for job in jobs["jobs"] if job["job_id"] == job_id) == 1


def test_a_webhook_jobs_events_route_through_pipelines_and_fire_its_plugins_hooks(hooks: Hooks) -> None:
    body = json.dumps({"mode": "emit", "events": [{"type": "hook.followup", "payload": {"n": 7}}]}).encode()
    root = hooks.signed("/hook/emit", body).json()["job_id"]

    def settled() -> list[dict[str, Any]] | None:
        nodes = hooks.gw.client.get(f"/job/{root}/tree").json()
        done = len(nodes) == 3 and all(n["status"] in TERMINAL for n in nodes)
        return nodes if done else None

    tree = wait_until(settled, 30, what="the webhook job's tree")
    assert [(n["plugin"], n["status"]) for n in tree] == [("behave", "succeeded")] + [("hookrecv", "succeeded")] * 2
    children = {hooks.gw.job(n["job_id"])["step_id"]: hooks.gw.job(n["job_id"]) for n in tree[1:]}
    assert set(children) == {"follow", "notified"}
    routed = json.loads(children["follow"]["result"]["result"])
    assert (routed["event"]["type"], routed["event"]["payload"]["n"]) == ("hook.followup", 7)
    hook = json.loads(children["notified"]["result"]["result"])
    assert (children["notified"]["submitted_by"], hook["event"]["type"]) == ("hook", "job.completed")
    assert (hook["event"]["payload"]["job_id"], hook["event"]["payload"]["submitted_by"]) == (root, "webhook:/hook/emit")


def _jobs_of(hooks: Hooks, path: str) -> list[dict[str, Any]]:
    resp = hooks.gw.client.get("/jobs", params={"submitted_by": f"webhook:{path}", "limit": 200})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["jobs"])


def test_a_client_that_hangs_up_after_sending_the_body_still_leaves_exactly_one_job(hooks: Hooks) -> None:
    body = b'{"hang":"up"}'
    with socket.create_connection(("127.0.0.1", hooks.port), timeout=10) as sock:
        sock.sendall(b"POST /hook/durable HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: " + sign(SECRET, body).encode()
                     + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    # Closed at once, before any answer: the commit must not have been cancelled with the connection.
    jobs = wait_until(lambda: _jobs_of(hooks, "/hook/durable") or None, 15, what="the hung-up delivery's job")
    time.sleep(0.5)  # a second job (a retried commit) would show by now
    jobs = _jobs_of(hooks, "/hook/durable")
    assert len(jobs) == 1, jobs
    seen = hooks.job_seen(jobs[0]["job_id"])
    assert seen["payload"]["payload"] == {"hang": "up"}


def test_killing_the_gateway_right_after_a_202_loses_no_job(hooks: Hooks) -> None:
    resp = hooks.signed("/hook/kill", b'{"kill":9}')
    assert resp.status_code == 202, resp.text
    hooks.gw.kill9()  # SIGKILL: no graceful stop, nothing flushed after the 202
    hooks.gw.start()
    wait_until(lambda: _listening(hooks.port), 10, what="the webhook listener after SIGKILL")
    seen = hooks.job_seen(resp.json()["job_id"])
    assert seen["payload"]["payload"] == {"kill": 9}
    assert [j["job_id"] for j in _jobs_of(hooks, "/hook/kill")] == [resp.json()["job_id"]]


def test_an_unparseable_request_gets_the_http_servers_bare_400(hooks: Hooks) -> None:
    with socket.create_connection(("127.0.0.1", hooks.port), timeout=10) as sock:
        sock.sendall(b"POST /hook/plain\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def test_config_view_shows_each_endpoint_by_the_spec_fields_and_no_secret(hooks: Hooks) -> None:
    resp = hooks.gw.client.get("/config/view")
    assert resp.status_code == 200, resp.text
    view = resp.json()["webhooks"]
    assert view["listen"] == f"127.0.0.1:{hooks.port}"
    by_path = {e["path"]: e for e in view["endpoints"]}
    assert by_path["/hook/plain"] == {"name": "/hook/plain", "path": "/hook/plain", "plugin": "hookrecv",
                                      "secret_ref": "hook_key", "signature_header": "X-Hub-Signature-256",
                                      "max_body_size": 64}
    assert by_path["/hook/typed"] == {"name": "typed", "path": "/hook/typed", "plugin": "hookrecv",
                                      "secret_ref": "hook_key", "signature_header": "X-Hub-Signature-256",
                                      "max_body_size": 1048576, "event_type": "site.rebuild_requested",
                                      "timestamp_header": "X-Ductile-Timestamp", "timestamp_tolerance": "5m"}
    assert "/hook/off" in by_path  # the configuration as loaded, served or not
    assert SECRET not in resp.text


def test_boot_logs_the_listener_under_the_webhook_component(hooks: Hooks) -> None:
    started = [line for line in hooks.gw.log_lines() if line.get("msg") == "gateway started"]
    assert started[-1]["webhooks_listen"] == f"127.0.0.1:{hooks.port}"
    rejected = [line for line in hooks.gw.log_lines() if line.get("msg") == "webhook rejected"]
    access = [line for line in hooks.gw.log_lines() if line.get("listener") == "webhooks"]
    assert {line["component"] for line in rejected + access} == {"webhook"}


def test_a_rolled_secret_takes_effect_without_a_restart(hooks: Hooks) -> None:
    body = b'{"roll":true}'
    assert hooks.signed("/hook/plain", body).status_code == 202
    env = {**os.environ, "DUCTILE_VAULT_TOKEN": hooks.admin}
    rolled = subprocess.run([sys.executable, "-m", "ductile.cli.main", "vault", "roll", "--name", "hook_key",
                             "--config", str(hooks.gw.root)], input="new-webhook-key\n", capture_output=True,
                            text=True, timeout=60, cwd=hooks.gw.root, env=env)
    assert rolled.returncode == 0, rolled.stderr
    old = hooks.signed("/hook/plain", body)
    assert (old.status_code, old.json()) == (403, FORBIDDEN)
    assert hooks.signed("/hook/plain", body, secret="new-webhook-key").status_code == 202
    # The last test that signs: the module's later tests do not post signed bodies.


def test_metrics_count_webhook_responses(hooks: Hooks) -> None:
    text = hooks.gw.client.get("/metrics").text
    assert 'ductile_webhook_requests_total{endpoint="/hook/plain",status="202"}' in text


def test_no_key_value_reaches_the_db_wal_log_or_sse_replay(hooks: Hooks) -> None:
    """The canary rule of vault.md §14 for webhook traffic: both HMAC keys (the seeded one and the
    rolled one) were used above; neither is in the state DB, its WAL, the log, or the SSE replay."""
    db = hooks.gw.state_db
    for path in (db, db.with_name(db.name + "-wal"), hooks.gw.log_path):
        if path.exists():
            data = path.read_bytes()
            assert SECRET.encode() not in data and b"new-webhook-key" not in data, path
    with hooks.gw.client.stream("GET", "/events", headers={"Last-Event-ID": "0"}, timeout=5) as resp:
        seen = b""
        for chunk in resp.iter_bytes():
            seen += chunk
            if b"job.enqueued" in seen and b"webhook:/hook/typed" in seen:
                break
    assert b"webhook:/hook/plain" in seen  # the webhook jobs' SSE frames were read
    frames = [json.loads(line[len(b"data: "):]) for block in seen.split(b"\n\n") if b"event: job.enqueued" in block
              for line in block.split(b"\n") if line.startswith(b"data: ")]
    typed = [f for f in frames if f.get("submitted_by") == "webhook:/hook/typed"]
    assert typed and {"job_id", "plugin", "command", "submitted_by"} <= set(typed[0])
    assert (typed[0]["plugin"], typed[0]["command"]) == ("hookrecv", "handle")
    assert SECRET.encode() not in seen and b"new-webhook-key" not in seen


def test_missing_secret_ref_refuses_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    gw = Daemon(tmp_path / "gw", plugins={"hookrecv": {"enabled": True}})
    (tmp_path / "gw").mkdir(parents=True, exist_ok=True)
    seed_vault(tmp_path / "gw", {"other": "x"})
    gw.config["webhooks"] = {"listen": f"127.0.0.1:{free_port()}", "endpoints": [endpoint("/h")]}
    gw.write_config()
    done = subprocess.run([sys.executable, "-m", "ductile.cli.main", "system", "start", "--config", str(gw.root)],
                          capture_output=True, text=True, timeout=60, cwd=gw.root)
    assert done.returncode == 1
    assert done.stderr.strip().endswith('webhook endpoint "/h": secret_ref "hook_key" not found in vault')


def test_without_the_age_key_boot_is_refused_by_the_vault_rule_not_the_endpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """§1 makes an unresolvable secret_ref only a warning when the vault exists but no age key is
    available (``config.webhooks.check_secret_refs(vault_unreadable=True)``, for `config check`).
    Boot never gets that far: vault.md §1 refuses a vault it cannot open, before any secret_ref."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    gw = Daemon(tmp_path / "gw", plugins={"hookrecv": {"enabled": True}})
    key, _ = seed_vault(gw.root, {"hook_key": SECRET})
    key.unlink()
    gw.config["webhooks"] = {"listen": f"127.0.0.1:{free_port()}", "endpoints": [endpoint("/h")]}
    gw.write_config()
    done = subprocess.run([sys.executable, "-m", "ductile.cli.main", "system", "start", "--config", str(gw.root)],
                          capture_output=True, text=True, timeout=60, cwd=gw.root)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"vault {gw.root / 'vault.age'} exists but no age key was found "
                                        "(set secrets.age_key_file or DUCTILE_AGE_KEY_FILE)"), done.stderr
    assert "webhook endpoint" not in done.stderr
