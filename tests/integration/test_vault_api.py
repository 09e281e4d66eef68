"""The vault management API (vault.md §7) and the keyless CLI verbs (§4, §6) against the real
daemon: each route's 200 and refusals, the admin token versus an API `*` token, the audited 401s,
the management socket (modes, refusals, served with the API disabled), and a canary value that
never leaves the vault (DB, WAL, log, HTTP bodies)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from ductile.vault.keys import generate_identity, write_key_file
from tests.integration.daemon import TOKEN, Daemon, call, error_of

CANARY = f"CANARY-{uuid.uuid4()}"
MODIFIED = "vault: blob was modified externally; stop the gateway and run 'ductile vault adopt'"


def cli(gw: Daemon, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DUCTILE_VAULT_TOKEN"}
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=gw.root, env={**base, **(env or {})})


def init_vault(gw: Daemon) -> str:
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    init = cli(gw, "vault", "init", "--config", str(gw.root))
    assert init.returncode == 0, init.stderr
    return init.stdout.strip()


@pytest.fixture
def gw(vault_gw: Daemon) -> Daemon:
    return vault_gw


def sock_path(gw: Daemon) -> Path:
    return gw.state_db.parent / "vault-admin.sock"


def post(gw: Daemon, path: str, body: Any, token: str | None) -> httpx.Response:
    return call(gw, "POST", path, token=token, content=json.dumps(body).encode(),
                headers={"content-type": "application/json"})


def test_routes_answer_their_200_bodies_and_the_spec_refusals(gw: Daemon) -> None:
    gw.start()
    assert error_of(post(gw, "/vault/secret", {"name": "x"}, TOKEN)) == "vault not available"
    gw.stop()
    token = init_vault(gw)
    gw.start()

    ok = [
        ("/vault/principal", {"name": "mailer", "kind": "plugin"}, {"name": "mailer", "status": "principal_registered"}),
        ("/vault/secret", {"name": "smtp_pw", "value": CANARY, "authorized_principals": ["mailer"]},
         {"name": "smtp_pw", "status": "set"}),
        ("/vault/secret", {"name": "hook_key", "pattern": "auto", "authorized_principals": ["mailer"]},
         {"name": "hook_key", "status": "set"}),
        ("/vault/secret/roll", {"name": "hook_key"}, {"name": "hook_key", "status": "rolled"}),
        ("/vault/principal/roll", {"name": "mailer"}, {"name": "mailer", "rolled": ["hook_key"], "skipped": ["smtp_pw"]}),
        ("/vault/secret/revoke", {"name": "hook_key"}, {"name": "hook_key", "status": "revoked"}),
        ("/vault/principal/revoke", {"name": "mailer"}, {"name": "mailer", "status": "principal_revoked"}),
        ("/vault/principal/purge", {"name": "mailer"}, {"name": "mailer", "status": "principal_purged"}),
    ]
    bodies = []
    for path, body, answer in ok:
        resp = post(gw, path, body, token)
        assert (resp.status_code, resp.json()) == (200, answer), (path, resp.text)
        bodies.append(resp.text)

    refusals = [
        ("/vault/secret", {"name": "smtp_pw", "value": "other-value"}, "vault: secret value is immutable via set; use roll"),
        ("/vault/secret", {"name": "core-admin-token", "value": "v"},
         "vault: reserved entity cannot be mutated via the data plane"),
        ("/vault/secret/roll", {"name": "nope"}, "vault: unknown secret"),
        ("/vault/secret", {"name": "y", "value": "v", "authorized_principals": ["ghost"]}, "vault: unknown principal"),
        ("/vault/secret", {"name": "z", "pattern": "sometimes"}, "vault: invalid secret pattern"),
        ("/vault/principal/revoke", {"name": "ghost"}, "vault: unknown principal"),
        ("/vault/principal", {"name": "core"}, "vault: reserved entity cannot be mutated via the data plane"),
    ]
    for path, body, text in refusals:
        resp = post(gw, path, body, token)
        assert (resp.status_code, error_of(resp)) == (400, text), path
        bodies.append(resp.text)
    bad = call(gw, "POST", "/vault/secret", token=token, content=b"{nope")
    assert (bad.status_code, error_of(bad)) == (400, "invalid JSON body")

    audit = call(gw, "GET", "/vault/audit?secret=smtp_pw", token=token)
    assert audit.status_code == 200
    assert [r["op"] for r in audit.json()["rows"]][-1] == "set"
    assert audit.json()["secret"] == "smtp_pw"
    assert error_of(call(gw, "GET", "/vault/audit?limit=0", token=token)) == "limit must be > 0"
    bodies.append(audit.text)
    assert all(CANARY not in b for b in bodies)

    # The blob replaced behind the daemon's back: 409, nothing written.
    (gw.root / "vault.age").write_bytes(b"not age any more")
    resp = post(gw, "/vault/secret", {"name": "late", "value": "v"}, token)
    assert (resp.status_code, error_of(resp)) == (409, MODIFIED)


def test_only_the_admin_token_opens_the_vault_routes_and_refusals_are_audited(gw: Daemon) -> None:
    token = init_vault(gw)
    gw.start()
    star = post(gw, "/vault/principal", {"name": "p"}, TOKEN)  # an API token with scope "*"
    assert (star.status_code, error_of(star)) == (401, "invalid vault admin token")
    assert star.headers["www-authenticate"] == "Bearer"
    none = post(gw, "/vault/principal", {"name": "p"}, None)
    assert (none.status_code, error_of(none)) == (401, "missing or invalid Authorization header")
    basic = call(gw, "POST", "/vault/principal", token=None, headers={"Authorization": "Basic abc"}, json={"name": "p"})
    assert (basic.status_code, error_of(basic)) == (401, "invalid Authorization header format")
    assert post(gw, "/vault/principal", {"name": "p"}, token[:-1]).status_code == 401
    assert call(gw, "GET", "/vault/audit", token=TOKEN).status_code == 401
    elsewhere = call(gw, "GET", "/jobs", token=token)  # the admin token is no API token (api.md §2.3)
    assert (elsewhere.status_code, error_of(elsewhere)) == (401, "invalid token")

    rows = call(gw, "GET", "/vault/audit", token=token).json()["rows"]
    failed = [r for r in rows if r["op"] == "auth_failed"]
    # Five refusals from one address within a minute: one record.
    assert len(failed) == 1
    assert failed[0]["outcome"] == "denied" and failed[0]["detail"] == "path=/vault/principal remote=127.0.0.1"

    # The rotated token: the old one stops working at once (rotate-admin-token needs the daemon stopped).
    gw.stop()
    rotated = cli(gw, "vault", "rotate-admin-token", "--config", str(gw.root))
    assert rotated.returncode == 0, rotated.stderr
    gw.start()
    assert post(gw, "/vault/principal", {"name": "p"}, token).status_code == 401
    assert post(gw, "/vault/principal", {"name": "p"}, rotated.stdout.strip()).status_code == 200


def test_management_socket_is_0600_serves_the_vault_with_the_api_disabled_and_is_removed_at_stop(gw: Daemon) -> None:
    token = init_vault(gw)
    gw.config["api"]["enabled"] = False
    gw.write_config()
    gw.start(wait=False)
    path = sock_path(gw)
    from tests.polling import wait_until

    wait_until(lambda: path.exists(), 30, what="management socket")
    assert stat.S_ISSOCK(path.lstat().st_mode) and path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o022 == 0
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://vault") as client:
        resp = client.post("/vault/principal", json={"name": "mailer"}, headers={"Authorization": f"Bearer {token}"})
        assert (resp.status_code, resp.json()) == (200, {"name": "mailer", "status": "principal_registered"})
        assert client.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
        # operations.md §4: `system status` asks this /healthz first, with no token and the API off.
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    assert gw.stop() == 0
    assert not path.exists()


def test_management_socket_refuses_a_non_socket_file_and_replaces_a_stale_socket(gw: Daemon) -> None:
    init_vault(gw)
    path = sock_path(gw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mine")
    gw.start(wait=False)
    assert gw.proc is not None and gw.proc.wait(30) != 0
    assert f"management socket {path} exists and is not a socket; refusing to replace it" in gw.log_text()
    assert path.read_text() == "mine"

    path.unlink()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound, never listening: a crashed gateway's leftover
    gw.start()
    assert stat.S_ISSOCK(path.lstat().st_mode) and path.stat().st_mode & 0o777 == 0o600


def test_management_socket_refuses_a_group_writable_directory(gw: Daemon, tmp_path: Path) -> None:
    init_vault(gw)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    gw.config["api"]["management_socket"] = str(shared / "v.sock")
    gw.write_config()
    gw.start(wait=False)
    assert gw.proc is not None and gw.proc.wait(30) != 0
    assert f"management socket directory {shared} is group/other-writable without the sticky bit" in gw.log_text()


def test_keyless_cli_verbs_over_tcp_and_the_socket_and_the_canary_stays_in_the_vault(gw: Daemon) -> None:
    token = init_vault(gw)
    env = {"DUCTILE_VAULT_TOKEN": f"  {token}\n"}
    cfg = ("--config", str(gw.root))
    missing = cli(gw, "vault", "roll", *cfg, env=env)
    assert (missing.returncode, missing.stderr) == (1, "error: vault roll: --name is required\n")
    gw.start()
    assert sock_path(gw).exists()
    tcp = ("--api-url", gw.url)
    unix = ("--api-url", f"unix://{sock_path(gw)}")

    reg = cli(gw, "vault", "register-principal", "--name", "mailer", *cfg, env=env)  # default: the socket
    assert reg.returncode == 0, reg.stderr
    setting = cli(gw, "vault", "set", "--name", "smtp_pw", "--principal", "mailer", *tcp, env=env,
                  stdin=CANARY + "\r\n")
    assert (setting.returncode, setting.stderr) == (0, 'Set secret "smtp_pw"\n')
    auto = cli(gw, "vault", "set", "--name", "hook", "--pattern", "auto", "--principal", "mailer", *unix, env=env)
    assert auto.returncode == 0, auto.stderr
    got = cli(gw, "vault", "get", "--name", "smtp_pw", *cfg)
    assert got.stdout == CANARY + "\n"  # the trailing CR/LF is not part of the value

    roll = cli(gw, "vault", "roll-principal", "--name", "mailer", *unix, env=env)
    assert roll.returncode == 0, roll.stderr
    assert roll.stderr.splitlines() == ["Rolled 1 secret(s): hook", "Skipped (manual — roll each with a value): smtp_pw"]
    rolled = cli(gw, "vault", "roll", "--name", "smtp_pw", *tcp, env=env, stdin=CANARY + "-2\n")
    assert rolled.returncode == 0, rolled.stderr
    for verb in ("revoke", "revoke-principal", "purge-principal"):
        name = "hook" if verb == "revoke" else "mailer"
        done = cli(gw, "vault", verb, "--name", name, *unix, env=env)
        assert done.returncode == 0, (verb, done.stderr)

    refused = cli(gw, "vault", "set", "--name", "smtp_pw", *tcp, env=env, stdin="another\n")
    assert (refused.returncode, refused.stderr) == (
        1, "error: /vault/secret failed (400): vault: secret value is immutable via set; use roll\n")
    wrong = cli(gw, "vault", "revoke", "--name", "smtp_pw", *tcp, "--token", TOKEN)
    assert wrong.stderr == "error: /vault/secret/revoke failed (401): invalid vault admin token\n"
    no_token = cli(gw, "vault", "revoke", "--name", "smtp_pw", *tcp)
    assert no_token.stderr == "error: vault admin token required (--token or DUCTILE_VAULT_TOKEN)\n"
    bare = cli(gw, "vault", "revoke", "--name", "smtp_pw", "--api-url", "unix://", env=env)
    assert bare.returncode == 1 and "unix://" in bare.stderr
    both = cli(gw, "vault", "set", "--name", "x", *tcp, "--vault", "v.age", env=env)
    assert both.stderr == "error: choose one mode: --api-url or --vault/--key\n"

    gw.stop()
    # The daemon stopped: no socket, the API address from the config is the default.
    down = cli(gw, "vault", "revoke", "--name", "smtp_pw", *cfg, env=env)
    assert down.returncode == 1 and down.stderr.startswith("error: /vault/secret/revoke failed")
    gw.config["api"]["enabled"] = False
    gw.write_config()
    nowhere = cli(gw, "vault", "revoke", "--name", "smtp_pw", *cfg, env=env)
    assert nowhere.stderr == "error: --api-url is required (vault writes go through the daemon)\n"

    # The canary: in the encrypted blob only, never in the state DB (and its WAL) or the log.
    for leftover in gw.state_db.parent.iterdir():
        if leftover.is_file():
            assert CANARY.encode() not in leftover.read_bytes(), leftover
    assert CANARY not in gw.log_text()


def test_roll_of_a_manual_secret_from_a_terminal_refuses_without_blocking(gw: Daemon) -> None:
    import pty

    token = init_vault(gw)
    gw.start()
    env = {**os.environ, "DUCTILE_VAULT_TOKEN": token}
    assert cli(gw, "vault", "set", "--name", "pw", "--config", str(gw.root), env=env, stdin="v1\n").returncode == 0
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "ductile.cli.main", "vault", "roll", "--name", "pw", "--config",
                               str(gw.root)], stdin=follower, capture_output=True, text=True, timeout=30,
                              cwd=gw.root, env=env)
    finally:
        os.close(leader)
        os.close(follower)
    assert (proc.returncode, proc.stderr) == (1, 'error: vault roll: "pw" is manual; pipe the new value on stdin\n')
