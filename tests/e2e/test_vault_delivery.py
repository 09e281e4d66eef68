"""The vault end to end, as an operator meets it (vault.md §9, §10, §12, §14): a secret granted to a
plugin's principal reaches the plugin at spawn once the plugin is attested, is redacted from what
the gateway stores, every delivery is audited, and changed plugin bytes fail closed. The real
daemon, the real CLI and a real plugin; the value is never on disk outside vault.age."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ductile.config.checksums import Checksums, write_checksums
from ductile.vault.blob import BlobFile
from ductile.vault.document import CORE, Principal, Secret, VaultDocument
from ductile.vault.keys import generate_identity, write_key_file
from ductile.vault.mint import nonce
from ductile.vocabulary import PrincipalKind
from tests.integration.daemon import REPO, Daemon

CANARY = f"CANARY-{uuid.uuid4()}"


def cli(gw: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=gw.root)


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    root = tmp_path / "gw"
    shutil.copytree(REPO / "tests" / "plugins" / "secretsha", root / "plugins" / "secretsha")
    d = Daemon(root, plugins={"secretsha": {"enabled": True, "retry": {"max_attempts": 1}}},
               plugin_roots=[str(root / "plugins")])
    identity = generate_identity()
    write_key_file(root / "age.key", identity, "test")
    doc = VaultDocument(
        secrets={"smtp_pw": Secret(value=CANARY, authorized_principals=("secretsha",),
                                   created_at="2026-12-06T00:00:00Z", updated_at="2026-12-06T00:00:00Z")},
        principals={CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=nonce()),
                    "secretsha": Principal(kind=PrincipalKind.PLUGIN)},
    )
    blob = BlobFile(root / "vault.age")
    prepared = blob.prepare(doc, [identity.to_public()])
    assert prepared is not None
    blob.commit(prepared)
    write_checksums(root, Checksums(generated_at="2026-12-06T00:00:00Z"))  # `config lock` is issue 12's
    try:
        yield d
    finally:
        d.close()


def test_an_attested_plugin_gets_its_secret_redacted_and_audited_and_changed_bytes_fail_closed(gw: Daemon) -> None:
    locked = cli(gw, "plugin", "lock", "secretsha", "--config-dir", str(gw.root))
    assert locked.returncode == 0, locked.stderr
    gw.start()

    job = gw.wait_job(gw.trigger("secretsha"))
    assert job["status"] == "succeeded", json.dumps(job)
    digest = hashlib.sha256(CANARY.encode()).hexdigest()
    assert job["result"] == {"status": "ok", "result": f"names=smtp_pw sha256={digest} echo=[REDACTED:smtp_pw]"}

    audit = cli(gw, "system", "vault-audit", "--principal", "secretsha", "--json", "--config", str(gw.root))
    assert audit.returncode == 0, audit.stderr
    rows = json.loads(audit.stdout)["rows"]
    assert {"op": "deliver", "principal": "secretsha", "secret_name": "smtp_pw", "outcome": "ok",
            "detail": f"job_id={job['job_id']}"}.items() <= rows[0].items()

    entrypoint = gw.root / "plugins" / "secretsha" / "run.py"
    entrypoint.write_text(entrypoint.read_text() + "# changed after the lock\n")
    tampered = gw.wait_job(gw.trigger("secretsha"))
    assert tampered["status"] == "failed"
    assert tampered["last_error"].startswith("fingerprint_mismatch: "), json.dumps(tampered)
    assert "names=" not in json.dumps(tampered)  # the plugin never ran
    alert = json.loads(cli(gw, "system", "vault-audit", "--json", "--config", str(gw.root)).stdout)["rows"][0]
    assert (alert["op"], alert["outcome"], alert["principal"]) == ("fingerprint_mismatch", "security_alert",
                                                                   "secretsha")
    gw.stop()
    for path in (gw.state_db, gw.state_db.with_name(gw.state_db.name + "-wal"), gw.log_path):
        if path.exists():
            assert CANARY.encode() not in path.read_bytes(), path
