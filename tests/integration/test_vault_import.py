"""``ductile vault import --tokens FILE`` (vault.md §6) with the real CLI on a real gateway's config:
legacy entries become manual secrets with no grants, ``${ENV}`` keys are listed and skipped unless
``--resolve-env``, a bad name or a changed value refuses the whole file, ``--verify`` reports parity
(exit 2 unless all match), the import is audited and needs the gateway stopped, and no key value
is ever printed or stored outside the vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ductile.vault.keys import generate_identity, write_key_file
from tests.integration.daemon import Daemon

KEY_A = f"CANARY-A-{uuid.uuid4()}"
KEY_B = f"CANARY-B-{uuid.uuid4()}"


def cli(gw: Daemon, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=gw.root, env={**os.environ, **(env or {})})


def tokens_file(gw: Daemon, entries: list[dict[str, str]]) -> Path:
    path = gw.root / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": entries}, sort_keys=False))
    return path


def lock_config(gw: Daemon) -> None:
    """A tokens.yaml in the config dir is a high-security file: boot refuses it unlocked (config.md §6.3)."""
    assert cli(gw, "config", "lock", "--config", str(gw.root)).returncode == 0


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    monkeypatch.delenv("LEGACY_TOKEN_X", raising=False)
    d = Daemon(tmp_path / "gw", plugins={})
    write_key_file(d.root / "age.key", generate_identity(), "test")
    assert cli(d, "vault", "init", "--config", str(d.root)).returncode == 0
    d.start()  # creates the state DB and adopts the blob
    assert d.stop() == 0
    try:
        yield d
    finally:
        d.close()


def no_canary_outside_the_vault(gw: Daemon, *outputs: subprocess.CompletedProcess[str]) -> None:
    for out in outputs:
        for key in (KEY_A, KEY_B):
            assert key not in out.stdout and key not in out.stderr
    for blob in (gw.state_db, gw.state_db.with_name(gw.state_db.name + "-wal"), gw.log_path):
        if blob.exists():
            assert KEY_A.encode() not in blob.read_bytes() and KEY_B.encode() not in blob.read_bytes()


def test_import_skips_env_keys_until_resolved_and_verify_reports_parity(gw: Daemon) -> None:
    cfg = ("--config", str(gw.root))
    path = tokens_file(gw, [{"name": "ci-deploy", "key": KEY_A, "scopes_file": "scopes/ci.json"},
                            {"name": "from-env", "key": "${LEGACY_TOKEN_X}"}])

    before = cli(gw, "vault", "import", "--tokens", str(path), "--verify", *cfg)
    assert before.returncode == 2, before.stderr
    assert before.stdout.splitlines() == [
        "missing     ci-deploy",
        "unresolved  from-env  (${LEGACY_TOKEN_X} (pass --resolve-env to read it))",
        "2 entries: 0 match, 0 vault-only, 1 missing, 0 drift, 1 unresolved",
    ]

    first = cli(gw, "vault", "import", "--tokens", str(path), *cfg)
    assert (first.returncode, first.stdout) == (0, ""), first.stderr
    assert first.stderr.splitlines() == [
        'Skipped "from-env": ${LEGACY_TOKEN_X} (pass --resolve-env to read it)',
        "Imported 1 secret(s): ci-deploy",
    ]
    got = cli(gw, "vault", "get", "--name", "ci-deploy", *cfg)
    assert (got.returncode, got.stdout) == (0, KEY_A + "\n"), got.stderr
    listed = {s["name"]: s for s in json.loads(cli(gw, "vault", "list", "--json", *cfg).stdout)["secrets"]}
    assert (listed["ci-deploy"]["pattern"], listed["ci-deploy"]["grants"]) == ("manual", [])
    assert "from-env" not in listed

    unset = cli(gw, "vault", "import", "--tokens", str(path), "--resolve-env", *cfg)
    assert unset.returncode == 0, unset.stderr
    assert unset.stderr.splitlines() == ['Skipped "from-env": ${LEGACY_TOKEN_X} not set', "Imported 0 secret(s)",
                                         "Already in the vault (same value): ci-deploy"]

    env = {"LEGACY_TOKEN_X": KEY_B}
    second = cli(gw, "vault", "import", "--tokens", str(path), "--resolve-env", "--json", *cfg, env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {"imported": ["from-env"], "unchanged": ["ci-deploy"], "skipped": []}
    got = cli(gw, "vault", "get", "--name", "from-env", *cfg)
    assert got.stdout == KEY_B + "\n"

    parity = cli(gw, "vault", "import", "--tokens", str(path), "--verify", "--resolve-env", "--json", *cfg, env=env)
    assert parity.returncode == 0, parity.stderr
    assert json.loads(parity.stdout) == {"rows": [{"name": "ci-deploy", "state": "match", "detail": ""},
                                                  {"name": "from-env", "state": "match", "detail": ""}],
                                         "all_match": True}

    # A manual secret the file does not name, and a file key that no longer matches the vault.
    stray = cli(gw, "vault", "set", "--name", "stray", "--vault", str(gw.root / "vault.age"), "--key",
                str(gw.root / "age.key"), *cfg, stdin="stray-value\n")
    assert stray.returncode == 0, stray.stderr
    tokens_file(gw, [{"name": "ci-deploy", "key": KEY_A + "-changed"}, {"name": "from-env", "key": KEY_B}])
    drift = cli(gw, "vault", "import", "--tokens", str(path), "--verify", *cfg)
    assert drift.returncode == 2
    assert drift.stdout.splitlines() == [
        "drift       ci-deploy  (value differs)",
        "match       from-env",
        "vault-only  stray",
        "3 entries: 1 match, 1 vault-only, 0 missing, 1 drift, 0 unresolved",
    ]

    rows = json.loads(cli(gw, "system", "vault-audit", "--json", *cfg).stdout)["rows"]
    imports = [(r["secret_name"], r["actor"], r["outcome"]) for r in rows if r["op"] == "import"]
    assert imports == [("from-env", "cli", "ok"), ("ci-deploy", "cli", "ok")]
    no_canary_outside_the_vault(gw, before, first, unset, second, parity, drift)

    lock_config(gw)
    gw.start()  # the CLI logged every import: the blob agrees with the log
    status = json.loads(cli(gw, "vault", "status", "--json", *cfg).stdout)
    assert status["agreement"] == "agree"


def test_a_bad_name_or_a_changed_value_refuses_the_whole_file(gw: Daemon) -> None:
    cfg = ("--config", str(gw.root))
    vault = gw.root / "vault.age"
    path = tokens_file(gw, [{"name": "ci-deploy", "key": KEY_A}])
    assert cli(gw, "vault", "import", "--tokens", str(path), *cfg).returncode == 0
    blob = vault.read_bytes()

    tokens_file(gw, [{"name": "fresh", "key": KEY_B}, {"name": "ci-deploy", "key": KEY_B}])
    changed = cli(gw, "vault", "import", "--tokens", str(path), *cfg)
    assert (changed.returncode, changed.stdout) == (1, "")
    assert changed.stderr == "error: vault: secret value is immutable via set; use roll\n"

    # A bad name refuses even when its entry would have been skipped (a ${ENV} key).
    tokens_file(gw, [{"name": "fresh", "key": KEY_B}, {"name": "Bad_Name", "key": "${LEGACY_TOKEN_X}"}])
    bad = cli(gw, "vault", "import", "--tokens", str(path), *cfg)
    assert (bad.returncode, bad.stderr) == (1, "error: vault: invalid name\n")

    path.write_text("tokens: {name: x}\n")
    shape = cli(gw, "vault", "import", "--tokens", str(path), *cfg)
    assert shape.stderr == (f"error: {path}: not a legacy tokens file (expected 'tokens: [{{name, key}}, ...]')\n")
    path.write_text(f"tokens:\n  - name: fresh\n    key: {KEY_B}\n  - name: nokey\n")
    entry = cli(gw, "vault", "import", "--tokens", str(path), *cfg)
    assert entry.stderr == f"error: {path}: tokens[1] needs a string 'name' and a string 'key'\n"
    missing = cli(gw, "vault", "import", *cfg)
    assert (missing.returncode, missing.stderr) == (1, "error: vault import: --tokens is required\n")

    assert vault.read_bytes() == blob
    names = [s["name"] for s in json.loads(cli(gw, "vault", "list", "--json", *cfg).stdout)["secrets"]]
    assert names == ["ci-deploy", "core-admin-token"]
    no_canary_outside_the_vault(gw, changed, bad, shape, entry)


def test_import_needs_the_gateway_stopped_but_verify_does_not(gw: Daemon) -> None:
    cfg = ("--config", str(gw.root))
    path = tokens_file(gw, [{"name": "ci-deploy", "key": KEY_A}])
    lock_config(gw)
    gw.start()
    blob = (gw.root / "vault.age").read_bytes()
    locked = cli(gw, "vault", "import", "--tokens", str(path), *cfg)
    lock = gw.root / "data" / "ductile.pid"
    assert (locked.returncode, locked.stdout) == (1, "")
    assert locked.stderr == (f"error: vault import: the daemon appears to be running "
                             f"(could not take the lock {lock})\n")
    assert (gw.root / "vault.age").read_bytes() == blob
    verify = cli(gw, "vault", "import", "--tokens", str(path), "--verify", *cfg)
    assert (verify.returncode, verify.stdout.splitlines()[0]) == (2, "missing     ci-deploy")
