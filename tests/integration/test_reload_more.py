"""More of hot reload against the real daemon (config.md §7-§8, webhooks.md §1 and its checklist):
a reload cannot turn a gate off, ``api.enabled`` opens and closes the public listener, and the
webhook listener follows a reload (a rolled secret, endpoints added and removed, ``webhooks.listen``
restart-only, a tampered ``webhooks.yaml`` refused while the old endpoints keep serving).

Two daemons: one with the drift gate on (its API toggled), one with webhooks. Each test leaves its
daemon's config as it found it, locked, so the next one builds on it.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ductile.webhook_signatures import sign
from tests.integration.daemon import Daemon, free_port, process_alive, seed_vault, wait_until

OLD_SECRET = "reload-webhook-key-one"
NEW_SECRET = "reload-webhook-key-two"
FORBIDDEN = {"error": "forbidden"}
NOT_FOUND = {"error": "endpoint not found"}
RELOADED = "configuration reloaded"


def lock(gw: Daemon) -> None:
    done = gw.cli("config", "lock", "--config", str(gw.root))
    assert done.returncode == 0, done.stderr


def reload(gw: Daemon) -> httpx.Response:
    return gw.client.post("/system/reload")


def listening(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- the drift gate and the public listener ------------------------------------------------------


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    gw = Daemon(tmp_path_factory.mktemp("reload-gate") / "gw", {"shellok": {"enabled": True}},
                service={"admission": {"fail_on_drift": True}})
    lock(gw)  # boot refuses drift under the gate
    gw.start()
    yield gw
    gw.close()


def test_a_reload_cannot_turn_the_drift_gate_off(gated: Daemon) -> None:
    good = copy.deepcopy(gated.config)
    gated.config["service"]["admission"] = {"fail_on_drift": False}
    gated.write_config()  # not locked: config.yaml drifted, and the new config would lift the gate
    try:
        resp = reload(gated)
    finally:
        gated.config = good
        gated.write_config()
    config_yaml = gated.root / "config.yaml"
    assert resp.status_code == 409
    assert resp.json() == {
        "error": f"config reload rejected (admission.fail_on_drift): operational drift: {config_yaml}"}
    # The restored file matches the lock again: the gate still holds and a clean reload passes.
    assert reload(gated).status_code == 200


def test_api_enabled_by_reload_closes_and_opens_the_public_listener(gated: Daemon) -> None:
    assert listening(gated.url)
    gated.config["api"]["enabled"] = False
    gated.write_config()
    lock(gated)
    off = gated.cli("system", "reload", "--config", str(gated.root))  # by signal: there is no API to ask
    assert off.returncode == 0, off.stderr
    wait_until(lambda: not listening(gated.url), 10, what="the public listener to close")
    assert gated.proc is not None and process_alive(gated.proc.pid)  # the gateway keeps running

    gated.config["api"]["enabled"] = True
    gated.write_config()
    lock(gated)
    on = gated.cli("system", "reload", "--config", str(gated.root))
    assert on.returncode == 0, on.stderr
    wait_until(lambda: listening(gated.url), 10, what="the public listener to open again")
    assert gated.client.get("/jobs").status_code == 200  # the tokens answer as before
    assert gated.client.post("/plugin/shellok/poll", json={"payload": {}}).status_code == 202


# --- the webhook listener -------------------------------------------------------------------------


class Hooks:
    def __init__(self, gw: Daemon, port: int, admin: str) -> None:
        self.gw = gw
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.admin = admin
        self.endpoints: list[dict[str, Any]] = [endpoint("/hook/a")]

    @property
    def file(self) -> Path:
        return self.gw.root / "webhooks.yaml"

    def write(self, listen: str | None = None) -> None:
        doc = {"webhooks": {"listen": listen or f"127.0.0.1:{self.port}", "endpoints": self.endpoints}}
        self.file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def post(self, path: str, secret: str, body: bytes = b'{"n":1}') -> httpx.Response:
        return httpx.post(self.url + path, content=body, headers={"X-Hub-Signature-256": sign(secret, body)},
                          timeout=15)


def endpoint(path: str) -> dict[str, Any]:
    return {"path": path, "plugin": "hookrecv", "secret_ref": "hook_key", "signature_header": "X-Hub-Signature-256"}


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    root = tmp_path_factory.mktemp("reload-hooks") / "gw"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root.parent / "home"))
        mp.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
        gw = Daemon(root, {"hookrecv": {"enabled": True, "retry": {"max_attempts": 1}}})
        gw.config["include"] = ["webhooks.yaml"]
        gw.write_config()
        _, admin = seed_vault(root, {"hook_key": OLD_SECRET})
        h = Hooks(gw, free_port(), admin)
        h.write()
        lock(gw)  # webhooks.yaml is high-security: no boot without the lock
        gw.start()
        wait_until(lambda: listening(h.url), 10, what="the webhook listener")
        try:
            yield h
        finally:
            gw.close()


def test_a_rolled_webhook_secret_still_holds_after_a_system_reload(hooks: Hooks) -> None:
    assert hooks.post("/hook/a", OLD_SECRET).status_code == 202
    rolled = subprocess.run([sys.executable, "-m", "ductile.cli.main", "vault", "roll", "--name", "hook_key",
                             "--config", str(hooks.gw.root)], input=NEW_SECRET + "\n", capture_output=True,
                            text=True, timeout=60, cwd=hooks.gw.root,
                            env={**os.environ, "DUCTILE_VAULT_TOKEN": hooks.admin})
    assert rolled.returncode == 0, rolled.stderr
    reloaded = hooks.gw.cli("system", "reload", "--config", str(hooks.gw.root))
    assert reloaded.returncode == 0, reloaded.stderr

    old = hooks.post("/hook/a", OLD_SECRET)
    assert (old.status_code, old.json()) == (403, FORBIDDEN)
    assert hooks.post("/hook/a", NEW_SECRET).status_code == 202


def test_an_endpoint_added_by_reload_serves_at_once_and_a_removed_one_answers_404(hooks: Hooks) -> None:
    missing = hooks.post("/hook/b", NEW_SECRET)
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)
    hooks.endpoints.append(endpoint("/hook/b"))
    hooks.write()
    lock(hooks.gw)
    assert reload(hooks.gw).json()["message"] == RELOADED
    assert hooks.post("/hook/b", NEW_SECRET).status_code == 202  # no wait: the reload answered after the swap

    hooks.endpoints.pop()
    hooks.write()
    lock(hooks.gw)
    assert reload(hooks.gw).status_code == 200
    removed = hooks.post("/hook/b", NEW_SECRET)
    assert (removed.status_code, removed.json()) == (404, NOT_FOUND)
    assert hooks.post("/hook/a", NEW_SECRET).status_code == 202


def test_a_webhooks_listen_change_is_rejected_as_restart_only(hooks: Hooks) -> None:
    hooks.write(listen=f"127.0.0.1:{free_port()}")
    lock(hooks.gw)
    try:
        resp = reload(hooks.gw)
    finally:
        hooks.write()
        lock(hooks.gw)
    assert resp.status_code == 409
    assert resp.json() == {"error": "config reload rejected: changes to webhooks.listen require a full restart"}
    assert hooks.post("/hook/a", NEW_SECRET).status_code == 202


def test_a_tampered_webhooks_yaml_rejects_the_reload_and_the_old_endpoints_keep_serving(hooks: Hooks) -> None:
    hooks.endpoints.append(endpoint("/hook/sneaky"))
    hooks.write()  # not locked: a high-security file changed behind the operator's back
    try:
        resp = reload(hooks.gw)
        served = hooks.post("/hook/a", NEW_SECRET)
        sneaky = hooks.post("/hook/sneaky", NEW_SECRET)
    finally:
        hooks.endpoints.pop()
        hooks.write()
    assert resp.status_code == 409
    assert resp.json() == {"error": (
        f"config reload rejected: tampering detected: {hooks.file} does not match .checksums (high-security file); "
        f"if you made this change, run 'ductile config lock --config-dir {hooks.gw.root}'")}
    assert served.status_code == 202
    assert (sneaky.status_code, sneaky.json()) == (404, NOT_FOUND)
    assert reload(hooks.gw).status_code == 200  # the original bytes match the lock again
