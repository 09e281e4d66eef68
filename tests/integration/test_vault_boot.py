"""The vault's local CLI and the daemon's vault boot (vault.md §1, §3, §4, §6, §12), with the real
daemon and the real CLI: init prints the token once, the first boot adopts the blob, get is
audited, local key-touching commands refuse while the gateway runs, a foreign blob stops boot until
`vault adopt`, and an existing vault with no key stops boot."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ductile.vault.keys import generate_identity, write_key_file
from tests.integration.daemon import Daemon
from tests.polling import wait_until

CANARY = f"CANARY-{uuid.uuid4()}"
MISMATCH = ("vault.age does not match the event log (modified outside Ductile?); restore the matching vault.age "
            "or run 'ductile vault adopt'")


def cli(gw: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=gw.root)


@pytest.fixture
def gw(vault_gw: Daemon) -> Daemon:
    return vault_gw


def test_init_boot_get_and_audit(gw: Daemon) -> None:
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    init = cli(gw, "vault", "init", "--config", str(gw.root))
    assert init.returncode == 0, init.stderr
    token = init.stdout.strip()
    assert init.stdout == token + "\n" and len(token) == 43
    vault = gw.root / "vault.age"
    assert init.stderr.splitlines()[-2:] == [
        f"Wrote vault to {vault} (encrypted; core principal + fingerprint nonce seeded)",
        "Initial admin token (shown once — store it now; it is the vault API credential):",
    ]
    assert vault.stat().st_mode & 0o777 == 0o600
    again = cli(gw, "vault", "init", "--config", str(gw.root))
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == f'error: vault: refusing to init — "{vault}" already exists\n'

    offline = cli(gw, "vault", "set", "--name", "smtp_pw", "--vault", str(vault), "--key", str(gw.root / "age.key"),
                  stdin=CANARY + "\n")
    assert offline.returncode == 0, offline.stderr
    assert offline.stderr.splitlines()[-1] == 'Set secret "smtp_pw"'

    gw.start()  # first boot after init: the blob is adopted
    status = cli(gw, "vault", "status", "--json", "--config", str(gw.root))
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert list(doc) == ["vault_path", "exists", "key_path", "key_mode", "decrypts", "recipients", "principals",
                         "secrets", "agreement", "management_socket", "gateway_running", "pid"]
    assert (doc["exists"], doc["decrypts"], doc["recipients"], doc["agreement"], doc["gateway_running"]) == (
        True, True, 1, "agree", True)
    assert doc["secrets"] == {"active": 2, "revoked": 0} and doc["key_mode"] == "0600"

    got = cli(gw, "vault", "get", "--name", "smtp_pw", "--config", str(gw.root))
    assert (got.returncode, got.stdout) == (0, CANARY + "\n"), got.stderr
    reserved = cli(gw, "vault", "get", "--name", "core-admin-token", "--config", str(gw.root))
    assert (reserved.returncode, reserved.stdout) == (1, "")
    assert token not in reserved.stderr

    audit = cli(gw, "system", "vault-audit", "--json", "--config", str(gw.root))
    assert audit.returncode == 0, audit.stderr
    ops = [(r["op"], r.get("secret_name"), r["outcome"]) for r in json.loads(audit.stdout)["rows"]]
    assert ops[:3] == [("read", "core-admin-token", "denied"), ("read", "smtp_pw", "ok"), ("adopt", None, "ok")]
    human = cli(gw, "vault", "audit", "--secret", "smtp_pw", "--config", str(gw.root))
    assert human.stdout.splitlines()[0] == "Vault audit facts (newest first)"
    assert "  read   secret=smtp_pw  actor=cli  -> ok" in human.stdout
    bad_limit = cli(gw, "system", "vault-audit", "--limit", "0", "--config", str(gw.root))
    assert (bad_limit.returncode, bad_limit.stderr) == (1, "error: --limit must be > 0\n")

    listed = cli(gw, "vault", "list", "--json", "--config", str(gw.root))
    assert [s["name"] for s in json.loads(listed.stdout)["secrets"]] == ["core-admin-token", "smtp_pw"]

    before = vault.read_bytes()
    locked = cli(gw, "vault", "rotate-admin-token", "--config", str(gw.root))
    lock = gw.root / "data" / "ductile.pid"
    assert (locked.returncode, locked.stdout) == (1, "")
    assert locked.stderr == (f"error: vault rotate-admin-token: the daemon appears to be running "
                             f"(could not take the lock {lock})\n")
    assert vault.read_bytes() == before
    for blob in (gw.state_db, gw.state_db.with_name(gw.state_db.name + "-wal"), gw.log_path):
        if blob.exists():
            assert CANARY.encode() not in blob.read_bytes() and token.encode() not in blob.read_bytes()

    assert gw.stop() == 0
    rotated = cli(gw, "vault", "rotate-admin-token", "--config", str(gw.root))
    assert rotated.returncode == 0, rotated.stderr
    assert len(rotated.stdout.strip()) == 43 and rotated.stdout.strip() != token
    gw.start()  # the rotation was logged by the CLI: the blob agrees
    assert json.loads(cli(gw, "vault", "status", "--json", "--config", str(gw.root)).stdout)["agreement"] == "agree"


def test_a_foreign_blob_stops_boot_until_adopt(gw: Daemon, tmp_path: Path) -> None:
    key = gw.root / "age.key"
    write_key_file(key, generate_identity(), "test")
    assert cli(gw, "vault", "init", "--config", str(gw.root)).returncode == 0
    gw.start()
    assert gw.stop() == 0
    foreign = tmp_path / "foreign.age"
    assert cli(gw, "vault", "init", "--vault", str(foreign), "--key", str(key)).returncode == 0
    (gw.root / "vault.age").write_bytes(foreign.read_bytes())

    gw.start(wait=False)
    assert gw.proc is not None
    wait_until(lambda: gw.proc.poll() is not None, 30, what="the gateway refusing to boot")
    assert gw.proc.returncode == 1
    assert MISMATCH in gw.log_text()
    status = cli(gw, "vault", "status", "--json", "--config", str(gw.root))
    assert (status.returncode, json.loads(status.stdout)["agreement"]) == (1, "mismatch")

    adopted = cli(gw, "vault", "adopt", "--config", str(gw.root))
    assert adopted.returncode == 0, adopted.stderr
    gw.start()
    rows = json.loads(cli(gw, "system", "vault-audit", "--json", "--config", str(gw.root)).stdout)["rows"]
    assert (rows[0]["op"], rows[0]["actor"]) == ("adopt", "cli")


def test_an_existing_vault_with_no_key_stops_boot(gw: Daemon, tmp_path: Path) -> None:
    key = tmp_path / "elsewhere.key"
    write_key_file(key, generate_identity(), "test")
    assert cli(gw, "vault", "init", "--vault", str(gw.root / "vault.age"), "--key", str(key)).returncode == 0
    gw.start(wait=False)
    assert gw.proc is not None
    wait_until(lambda: gw.proc.poll() is not None, 30, what="the gateway refusing to boot")
    assert gw.proc.returncode == 1
    assert (f"vault {gw.root / 'vault.age'} exists but no age key was found (set secrets.age_key_file or "
            "DUCTILE_AGE_KEY_FILE)") in gw.log_text()


def test_init_without_a_config_needs_both_paths_and_an_existing_key(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DUCTILE_CONFIG_DIR", raising=False)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ductile.cli.main", "vault", "init", *args],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)

    alone = run()
    assert (alone.returncode, alone.stderr) == (1, "error: vault init: --vault and --key are required (no config found)\n")
    key = tmp_path / "age.key"
    missing = run("--vault", str(tmp_path / "v.age"), "--key", str(key))
    assert missing.stderr == (f"error: vault init: age key {key} not found (create one with "
                              f"'ductile secrets keygen --out {key}')\n")
    assert not (tmp_path / "v.age").exists()
