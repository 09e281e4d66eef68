"""``ductile vault rotate-key`` (vault.md §8) with the real CLI and the real gateway: §8's three
lines on stderr, one recipient after, the old key no longer opens the vault, the next boot starts
and ``vault get`` still works, and the ``rotate-key`` audit record; a step that fails (the key's
directory cannot take the staged key) gives its abort text, leaves a pair that still works, and
is audited ``failed`` — and a re-run then finishes the rotation."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ductile.vault.blob import VaultBlobError, decrypt, recipient_count
from ductile.vault.keys import generate_identity, load_keyring, write_key_file
from tests.integration.daemon import Daemon

CANARY = f"CANARY-{uuid.uuid4()}"


def cli(gw: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args, "--config", str(gw.root)], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=gw.root)


def success_lines(key: Path) -> list[str]:
    recipient = load_keyring(key).recipients[0]
    return ["Rotated the vault key; the previous key is retired.",
            f"New key written to {key} (mode 0600) — BACK IT UP NOW; backups taken before this rotation need the "
            "old key.",
            f"New public recipient: {recipient}"]


def audit_rows(gw: Daemon) -> list[dict[str, str]]:
    out = cli(gw, "system", "vault-audit", "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, str]] = json.loads(out.stdout)["rows"]
    return rows


def setup_vault(gw: Daemon, key: Path) -> None:
    """A vault with one manual secret, adopted by a first boot, gateway stopped again."""
    assert cli(gw, "vault", "init").returncode == 0
    offline = subprocess.run([sys.executable, "-m", "ductile.cli.main", "vault", "set", "--name", "smtp_pw",
                              "--vault", str(gw.root / "vault.age"), "--key", str(key), "--config", str(gw.root)],
                             input=CANARY + "\n", capture_output=True, text=True, timeout=60, cwd=gw.root)
    assert offline.returncode == 0, offline.stderr
    gw.start()
    assert gw.stop() == 0


def boots_and_reads(gw: Daemon, recipients: int) -> None:
    gw.start()
    status = json.loads(cli(gw, "vault", "status", "--json").stdout)
    assert (status["agreement"], status["decrypts"], status["recipients"]) == ("agree", True, recipients)
    got = cli(gw, "vault", "get", "--name", "smtp_pw")
    assert (got.returncode, got.stdout) == (0, CANARY + "\n"), got.stderr
    assert gw.stop() == 0


@pytest.fixture
def gw(vault_gw: Daemon) -> Daemon:
    return vault_gw


def test_rotate_key_retires_the_old_key_and_the_gateway_still_reads_the_vault(gw: Daemon) -> None:
    key = gw.root / "age.key"
    old = generate_identity()
    write_key_file(key, old, "test")
    setup_vault(gw, key)

    rotated = cli(gw, "vault", "rotate-key")
    assert (rotated.returncode, rotated.stdout) == (0, ""), rotated.stderr
    assert rotated.stderr.splitlines()[-3:] == success_lines(key)
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text().startswith("# created by ductile vault rotate-key")
    assert sorted(p.name for p in gw.root.iterdir() if p.name.startswith((".vault-", "age.key"))) == ["age.key"]

    vault = gw.root / "vault.age"
    blob = vault.read_bytes()
    assert recipient_count(blob, vault) == 1
    with pytest.raises(VaultBlobError):
        decrypt(blob, [old], vault)
    assert CANARY.encode() in decrypt(blob, load_keyring(key).identities, vault)

    record = audit_rows(gw)[0]
    assert (record["op"], record["actor"], record["outcome"]) == ("rotate-key", "cli", "ok")
    assert record["detail"] == f"recipient={load_keyring(key).recipients[0]}"
    assert re.fullmatch(r"recipient=age1[0-9a-z]{58}", record["detail"])
    boots_and_reads(gw, recipients=1)
    assert CANARY not in rotated.stderr and CANARY not in gw.log_text()


def _freeze(directory: Path) -> None:
    """Make ``directory`` refuse new names, also for root (which ignores a 0500 mode)."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("running as root without a working 'chattr +i': cannot make a directory refuse writes")


def _thaw(directory: Path) -> None:
    if os.geteuid() != 0:
        directory.chmod(0o700)
    else:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_a_failed_stage_keeps_the_old_key_live_is_audited_and_a_rerun_finishes(gw: Daemon, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    key = keys / "age.key"
    write_key_file(key, generate_identity(), "test")
    gw.config["secrets"] = {"age_key_file": str(key)}
    gw.write_config()
    setup_vault(gw, key)
    old_key_text = key.read_text()

    _freeze(keys)
    try:
        failed = cli(gw, "vault", "rotate-key")
    finally:
        _thaw(keys)
    assert (failed.returncode, failed.stdout) == (1, "")
    reason = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"
    assert failed.stderr.startswith(f"error: vault rotate-key: step 3 (stage) failed: {keys}/"), failed.stderr
    assert failed.stderr.endswith(f": {reason} (old key still live at {key} — re-run)\n"), failed.stderr
    assert key.read_text() == old_key_text
    assert [p.name for p in keys.iterdir()] == ["age.key"]  # no staged key left behind
    assert recipient_count((gw.root / "vault.age").read_bytes()) == 2  # the bridge: {old, new}

    record = audit_rows(gw)[0]
    assert (record["op"], record["actor"], record["outcome"]) == ("rotate-key", "cli", "failed")
    assert record["detail"].startswith(f"step=stage error={keys}/") and record["detail"].endswith(reason)
    boots_and_reads(gw, recipients=2)  # the crash table's "after 1 … before 4": the old key works

    again = cli(gw, "vault", "rotate-key")
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[-3:] == success_lines(key)
    assert key.read_text() != old_key_text
    boots_and_reads(gw, recipients=1)
