"""``Idempotency-Key`` on ``POST /plugin/{plugin}/{command}`` of a real daemon (api.md §1, issue 19
item 3): a client that retries after a lost answer never enqueues the work twice.

One daemon serves the module; each test uses its own keys, so none sees another's jobs. The
restart test restarts that daemon, and asserts nothing about the others' state.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.daemon import TOKEN, Daemon, call, error_of

FAST = {"max_attempts": 1}
PLUGINS = {"behave": {"enabled": True, "retry": FAST}, "idem": {"enabled": True, "uses": "behave", "retry": FAST}}
REPLAYED = "Idempotent-Replayed"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("idem") / "gw", PLUGINS, service={"shutdown_grace": "1s"})
    d.start()
    yield d
    d.close()


def send(gw: Daemon, key: str | None, command: str = "poll", payload: dict[str, Any] | None = None,
         plugin: str = "idem") -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return call(gw, "POST", f"/plugin/{plugin}/{command}", json={"payload": payload or {}}, headers=headers)


def jobs_of(gw: Daemon, plugin: str = "idem") -> set[str]:
    resp = call(gw, "GET", f"/jobs?plugin={plugin}&limit=200")
    assert resp.status_code == 200, resp.text
    return {j["job_id"] for j in resp.json()["jobs"]}


def key() -> str:
    return f"order-{uuid.uuid4()}"


def test_concurrent_sends_of_one_key_make_one_job(gw: Daemon) -> None:
    k, before = key(), jobs_of(gw)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: send(gw, k, payload={"mode": "sleep", "seconds": 0.5}), range(12)))
    assert {r.status_code for r in answers} == {202}
    bodies = [r.json() for r in answers]
    assert len({b["job_id"] for b in bodies}) == 1, bodies
    first = [r for r in answers if "deduped" not in r.json()]
    replays = [r for r in answers if r.json().get("deduped") is True]
    assert len(first) == 1 and len(replays) == 11
    assert REPLAYED not in first[0].headers
    assert all(r.headers[REPLAYED] == "true" for r in replays)
    assert jobs_of(gw) - before == {bodies[0]["job_id"]}


def test_a_repeat_after_success_answers_the_first_job_with_its_status(gw: Daemon) -> None:
    k = key()
    first = send(gw, k)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    job_id = first.json()["job_id"]
    gw.wait_job(job_id)
    again = send(gw, k)
    assert again.status_code == 202
    assert again.json() == {"job_id": job_id, "status": "succeeded", "plugin": "idem", "command": "poll",
                            "deduped": True}
    assert again.headers[REPLAYED] == "true"


def test_another_key_or_another_command_is_a_new_job(gw: Daemon) -> None:
    k = key()
    a = send(gw, k).json()["job_id"]
    b = send(gw, key()).json()["job_id"]
    c = send(gw, k, command="custom_cmd").json()
    d = send(gw, None).json()["job_id"]
    assert len({a, b, c["job_id"], d}) == 4
    assert "deduped" not in c


def test_a_key_whose_job_failed_enqueues_anew(gw: Daemon) -> None:
    k = key()
    first = send(gw, k, payload={"mode": "error"}).json()["job_id"]
    assert gw.wait_job(first)["status"] == "failed"
    again = send(gw, k, payload={"mode": "error"})
    assert again.status_code == 202 and "deduped" not in again.json() and REPLAYED not in again.headers
    assert again.json()["job_id"] != first


@pytest.mark.parametrize("raw", ["", "x" * 256, "caf\xc3\xa9", "tab\there"],
                         ids=["empty", "256 bytes", "utf-8 bytes", "a tab"])
def test_a_malformed_key_is_400_and_enqueues_nothing(gw: Daemon, raw: str) -> None:
    before = jobs_of(gw)
    resp = gw.raw_request("POST", "/plugin/idem/poll", [
        ("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json"), ("Idempotency-Key", raw),
    ], body=b'{"payload":{}}')
    assert resp.status == 400, resp.body
    assert resp.json() == {"error": "invalid Idempotency-Key"}
    assert jobs_of(gw) == before


def test_the_longest_and_widest_key_is_accepted(gw: Daemon) -> None:
    printable = "".join(chr(c) for c in range(0x21, 0x7F))
    k = (printable * 3)[:255]
    first = send(gw, k)
    assert first.status_code == 202, first.text
    assert send(gw, k).json()["job_id"] == first.json()["job_id"]


def test_the_openapi_document_names_the_header_and_the_replay_header(gw: Daemon) -> None:
    doc = gw.client.get("/openapi.json").json()
    for path in ("/plugin/{plugin}/{command}", "/plugin/idem/poll"):
        post = doc["paths"][path]["post"]
        params = {p["name"]: p for p in post.get("parameters", []) if p["in"] == "header"}
        assert params["Idempotency-Key"]["required"] is False
        assert params["Idempotency-Key"]["schema"]["maxLength"] == 255
        assert REPLAYED in post["responses"]["202"]["headers"]


def test_the_cli_sends_the_key_and_a_repeat_names_the_first_job(gw: Daemon) -> None:
    k = key()
    runs = [gw.cli("plugin", "run", "idem", "--idempotency-key", k, "--api-url", gw.url, "--api-key", TOKEN,
                   "--json") for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert second["job_id"] == first["job_id"] and second["deduped"] is True
    bad = gw.cli("plugin", "run", "idem", "--idempotency-key", "", "--api-url", gw.url, "--api-key", TOKEN)
    assert bad.returncode == 1 and "invalid Idempotency-Key" in bad.stderr


def test_a_repeat_after_a_restart_answers_the_first_job(gw: Daemon) -> None:
    done = key()
    done_id = send(gw, done).json()["job_id"]
    gw.wait_job(done_id)
    assert gw.stop() == 0
    gw.start()
    replay = send(gw, done)
    assert replay.status_code == 202 and replay.headers[REPLAYED] == "true"
    assert replay.json()["job_id"] == done_id and replay.json()["status"] == "succeeded"
    assert error_of(send(gw, "")) == "invalid Idempotency-Key"
