"""Input that a client or a plugin controls never breaks the API (api.md §1, §3, §4.3; issue 9).

Every answer is a JSON object: a shape the gateway cannot take is the client's error (400 with
``{"error": ...}``), and a plugin's odd output stays readable as text rather than poisoning every
read of its job (the plugin side is ``test_plugin_corpus.py``). One daemon serves the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import TOKEN, Daemon, call, error_of

FAST = {"max_attempts": 1}
PLUGINS = {
    "behave": {"enabled": True, "retry": FAST},
    "wide": {"enabled": True, "uses": "behave", "retry": FAST},  # integer-width tests count its jobs
}
TOO_DEEP = "JSON body nested too deeply (at most 128 levels)"
TOO_WIDE = "JSON integer out of range at $.payload.n (integers must fit in 64 bits)"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("hostile")
    d = Daemon(root / "gw", PLUGINS, service={"shutdown_grace": "1s"})
    d.start()
    yield d
    d.close()


def jobs_of(gw: Daemon, plugin: str) -> int:
    with gw.db() as db:
        return db.execute("SELECT COUNT(*) FROM job_queue WHERE plugin=?", (plugin,)).fetchone()[0]


def nested(depth: int) -> bytes:
    """A body whose payload holds ``depth - 2`` nested lists, so the whole body nests ``depth`` levels."""
    inner = depth - 2
    return b'{"payload": {"v": ' + b"[" * inner + b"]" * inner + b"}}"


# --- D: request bodies and request lines the gateway cannot take ------------------------------------

@pytest.mark.parametrize("depth", [129, 995, 100_000])
def test_a_body_nested_deeper_than_128_levels_is_400(gw: Daemon, depth: int) -> None:
    before = jobs_of(gw, "behave")
    resp = call(gw, "POST", "/plugin/behave/poll", content=nested(depth))
    assert (resp.status_code, error_of(resp)) == (400, TOO_DEEP)
    assert jobs_of(gw, "behave") == before


def test_a_body_nested_128_levels_is_accepted(gw: Daemon) -> None:
    resp = call(gw, "POST", "/plugin/behave/poll", content=nested(128))
    assert resp.status_code == 202, resp.text


def test_a_raw_0xff_byte_in_the_path_gets_the_json_error_body(gw: Daemon) -> None:
    resp = gw.raw_request("GET", "/job/\xff", [("Authorization", f"Bearer {TOKEN}")])
    assert resp.status == 400
    assert resp.headers["content-type"].startswith("application/json"), resp.body
    assert resp.json() == {"error": "invalid request"}


# --- 7: integers the event log cannot store ---------------------------------------------------------

@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_wider_than_64_bits_is_a_client_error(gw: Daemon, n: int) -> None:
    before = jobs_of(gw, "wide")
    resp = call(gw, "POST", "/plugin/wide/poll", content=b'{"payload": {"n": %d}}' % n)
    assert (resp.status_code, error_of(resp)) == (400, TOO_WIDE)
    assert jobs_of(gw, "wide") == before


@pytest.mark.parametrize("n", [2**64 - 1, -(2**63)])
def test_the_widest_64_bit_integers_are_stored_and_delivered(gw: Daemon, n: int) -> None:
    resp = call(gw, "POST", "/plugin/wide/poll", content=b'{"payload": {"mode": "ok", "result": "got", "n": %d}}' % n)
    assert resp.status_code == 202, resp.text
    assert gw.wait_job(resp.json()["job_id"])["status"] == "succeeded"
    inspect = gw.cli("job", "inspect", resp.json()["job_id"], "--json", "--config", str(gw.root))
    assert json.loads(inspect.stdout)["job"]["payload"]["n"] == n


# --- 8: the body limit is 10 MiB ---------------------------------------------------------------------

def test_a_body_just_under_ten_mebibytes_is_accepted(gw: Daemon) -> None:
    head, tail = b'{"command": "poll", "pad": "', b'"}'
    body = head + b"a" * (10 * 1024 * 1024 - len(head) - len(tail)) + tail
    assert len(body) == 10 * 1024 * 1024 > 10_000_000
    resp = call(gw, "POST", "/system/breaker/behave/reset", content=body)
    assert resp.status_code == 200, resp.text[:500]
    over = call(gw, "POST", "/system/breaker/behave/reset", content=body + b" ")
    assert (over.status_code, error_of(over)) == (413, "request body too large")


# --- 10: breaker reset validates its command ---------------------------------------------------------

@pytest.mark.parametrize("command", [False, 0, [], {}, True, 7])
def test_breaker_reset_refuses_a_command_that_is_not_a_string(gw: Daemon, command: Any) -> None:
    resp = call(gw, "POST", "/system/breaker/behave/reset", json={"command": command})
    assert (resp.status_code, error_of(resp)) == (400, "command must be a string")


def test_breaker_reset_without_a_command_resets_poll(gw: Daemon) -> None:
    for body in ({}, {"command": None}):
        resp = call(gw, "POST", "/system/breaker/behave/reset", json=body)
        assert (resp.status_code, resp.json()) == (200, {"plugin": "behave", "command": "poll", "state": "closed"})
