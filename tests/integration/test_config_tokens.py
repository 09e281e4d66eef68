"""Scoped API tokens in the vault (config.md §10, vault.md §11) with the real daemon and the real
CLI: `config token create` prints the token once and the gateway then accepts it with exactly its
scopes; a secret_ref that is not in the vault stops boot; `config token list` shows entries and
never values; `config token revoke` makes the token answer 401; no value reaches the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
import yaml

from ductile.vault.keys import generate_identity, write_key_file
from tests.integration.daemon import TOKEN, Daemon

HINT = "Run 'ductile config lock', then 'ductile system reload'."


def cli(gw: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args, "--config", str(gw.root)], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=gw.root)


def status(gw: Daemon, path: str, token: str) -> int:
    return httpx.get(gw.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


@pytest.fixture
def gw(vault_gw: Daemon) -> Daemon:
    return vault_gw


def test_create_use_list_and_revoke_a_scoped_token(gw: Daemon) -> None:
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    assert cli(gw, "vault", "init").returncode == 0

    bad = cli(gw, "config", "token", "create", "--name", "ci", "--scopes", "jobs:ro,jobs:everything")
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, "", 'error: unknown scope "jobs:everything"\n')
    scopes_file = gw.root / "scopes.json"
    scopes_file.write_text('{"scope": ["jobs:ro"]}')
    bad = cli(gw, "config", "token", "create", "--name", "ci", "--scopes-file", str(scopes_file))
    assert bad.stderr == f'error: scopes file {scopes_file}: expected {{"scopes": [string, ...]}}\n'
    both = cli(gw, "config", "token", "create", "--name", "ci", "--scopes", "jobs:ro", "--scopes-file", "-")
    assert both.stderr == "error: use exactly one of --scopes or --scopes-file\n"
    assert not (gw.root / "config.yaml.bak").exists()  # nothing written by a refused create

    scopes_file.write_text('{"scopes": ["jobs:status:ro"]}')
    created = cli(gw, "config", "token", "create", "--name", "ci", "--scopes-file", str(scopes_file))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and len(token) == 43
    assert created.stderr.splitlines()[-2:] == [
        'Created API token "ci" (scopes: jobs:status:ro). It is shown only once.', HINT]
    entries = yaml.safe_load((gw.root / "config.yaml").read_text())["api"]["auth"]["tokens"]
    assert entries[-1] == {"secret_ref": "api-token-ci", "scopes": ["jobs:status:ro"]}
    assert (gw.root / "config.yaml.bak").exists()
    again = cli(gw, "config", "token", "create", "--name", "ci", "--scopes", "jobs:ro")
    assert (again.returncode, again.stderr) == (1, 'error: token "ci" already exists\n')

    gw.start()
    assert status(gw, "/jobs", token) == 200
    assert status(gw, "/metrics", token) == 403  # system:ro is not among its scopes
    assert status(gw, "/jobs", token[:-1] + ("A" if token[-1] != "A" else "B")) == 401
    assert status(gw, "/metrics", TOKEN) == 200  # the literal token still works

    listed = cli(gw, "config", "token", "list", "--json")
    assert json.loads(listed.stdout) == {"tokens": [
        {"name": "api.auth.tokens[0]", "source": "literal", "scopes": ["*"], "status": "literal"},
        {"name": "ci", "secret_ref": "api-token-ci", "source": "secret_ref", "scopes": ["jobs:status:ro"],
         "status": "active"}]}
    human = cli(gw, "config", "token", "list")
    assert human.stdout.splitlines() == [
        "NAME                SECRET_REF    SCOPES          STATUS",
        "api.auth.tokens[0]  -             *               literal",
        "ci                  api-token-ci  jobs:status:ro  active",
    ]
    assert TOKEN not in human.stdout + listed.stdout and token not in human.stdout + listed.stdout

    assert gw.stop() == 0
    revoked = cli(gw, "config", "token", "revoke", "--name", "ci", "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"name": "ci", "secret_ref": "api-token-ci", "revoked": True}
    assert revoked.stderr.splitlines()[-2:] == ['Revoked API token "ci"', HINT]
    gone = cli(gw, "config", "token", "revoke", "--name", "ci")
    assert (gone.returncode, gone.stderr) == (1, 'error: token "ci" not found\n')
    gw.start()
    assert status(gw, "/jobs", token) == 401
    secrets = {s["name"]: s["status"] for s in json.loads(cli(gw, "vault", "list", "--json").stdout)["secrets"]}
    assert secrets["api-token-ci"] == "revoked"

    for blob in (gw.state_db, gw.state_db.with_name(gw.state_db.name + "-wal"), gw.log_path):
        if blob.exists():
            assert token.encode() not in blob.read_bytes()


def test_a_secret_ref_missing_from_the_vault_stops_boot(gw: Daemon) -> None:
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    assert cli(gw, "vault", "init").returncode == 0
    gw.config["api"]["auth"]["tokens"].append({"secret_ref": "nope", "scopes": ["*"]})
    gw.write_config()
    gw.start(wait=False)
    assert gw.proc is not None and gw.proc.wait(30) == 1
    assert 'api.auth.tokens[1]: secret_ref "nope" not found in vault' in gw.log_text()


def test_create_and_revoke_through_the_running_gateway_and_revoke_takes_effect_at_once(gw: Daemon) -> None:
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    init = cli(gw, "vault", "init")
    assert init.returncode == 0, init.stderr
    admin = {"DUCTILE_VAULT_TOKEN": init.stdout.strip()}
    gw.start()

    created = cli_env(gw, admin, "config", "token", "create", "--name", "ops", "--scopes", "jobs:ro")
    assert created.returncode == 0, created.stderr  # stored through /vault/secret: the daemon holds the lock
    token = created.stdout.strip()
    secrets = {s["name"]: s["status"] for s in json.loads(cli(gw, "vault", "list", "--json").stdout)["secrets"]}
    assert secrets["api-token-ops"] == "active"
    assert status(gw, "/jobs", token) == 401  # the entry joins the running gateway at the next load

    assert gw.stop() == 0
    gw.start()
    assert status(gw, "/jobs", token) == 200
    revoked = cli_env(gw, admin, "config", "token", "revoke", "--name", "ops")
    assert revoked.returncode == 0, revoked.stderr
    assert status(gw, "/jobs", token) == 401  # no reload: the value is read fresh on every request (vault.md §11)


def cli_env(gw: Daemon, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args, "--config", str(gw.root)],
                          capture_output=True, text=True, timeout=60, cwd=gw.root, env={**os.environ, **env})


def test_a_create_whose_config_then_fails_validation_is_undone_and_its_secret_revoked(gw: Daemon) -> None:
    # config.md §10 step 4: the entry is written with `config set --apply`'s rules, validation
    # included; an enabled plugin missing from plugin_roots is a doctor error.
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    assert cli(gw, "vault", "init").returncode == 0
    gw.config["plugins"]["ghost"] = {"enabled": True}
    gw.write_config()
    before = (gw.root / "config.yaml").read_bytes()
    failed = cli(gw, "config", "token", "create", "--name", "ci", "--scopes", "jobs:ro")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("error: validation failed: ") and "(restored config.yaml)" in failed.stderr
    assert 'plugin "ghost"' in failed.stderr
    assert (gw.root / "config.yaml").read_bytes() == before
    got = cli(gw, "vault", "get", "--name", "api-token-ci")  # offline: the vault file itself
    assert (got.returncode, got.stdout) == (1, "")
    assert got.stderr.endswith('error: secret "api-token-ci" is revoked (value cleared)\n')
