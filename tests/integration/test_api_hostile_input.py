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

from tests.integration.daemon import Daemon, call, error_of

FAST = {"max_attempts": 1}
PLUGINS = {
    "behave": {"enabled": True, "retry": FAST},
    "wide": {"enabled": True, "uses": "behave", "retry": FAST},
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("hostile")
    d = Daemon(root / "gw", PLUGINS, service={"shutdown_grace": "1s"})
    d.start()
    yield d
    d.close()


# --- 7: integers the event log can store (the refused ones are in test_api_corpus.py) ---------------

@pytest.mark.parametrize("n", [2**64 - 1, -(2**63)])
def test_the_widest_64_bit_integers_are_stored_and_delivered(gw: Daemon, n: int) -> None:
    resp = call(gw, "POST", "/plugin/wide/poll", content=b'{"payload": {"mode": "ok", "result": "got", "n": %d}}' % n)
    assert resp.status_code == 202, resp.text
    assert gw.wait_job(resp.json()["job_id"])["status"] == "succeeded"
    inspect = gw.cli("job", "inspect", resp.json()["job_id"], "--json", "--config", str(gw.root))
    assert json.loads(inspect.stdout)["job"]["payload"]["n"] == n


# --- 10: breaker reset validates its command ---------------------------------------------------------

@pytest.mark.parametrize("command", [False, 0, [], {}, True, 7])
def test_breaker_reset_refuses_a_command_that_is_not_a_string(gw: Daemon, command: Any) -> None:
    resp = call(gw, "POST", "/system/breaker/behave/reset", json={"command": command})
    assert (resp.status_code, error_of(resp)) == (400, "command must be a string")


def test_breaker_reset_without_a_command_resets_poll(gw: Daemon) -> None:
    for body in ({}, {"command": None}):
        resp = call(gw, "POST", "/system/breaker/behave/reset", json=body)
        assert (resp.status_code, resp.json()) == (200, {"plugin": "behave", "command": "poll", "state": "closed"})
