"""``ductile plugin lock`` (vault.md §9) run as the real command against a vault built with the
leaf modules: attestation into ``.checksums``, ``--all`` preview and confirmation, every refusal."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import yaml

from ductile.config.checksums import Checksums, read_checksums, write_checksums
from ductile.vault.blob import BlobFile
from ductile.vault.document import CORE, Principal, VaultDocument
from ductile.vault.fingerprint import FingerprintKey, plugin_fingerprint
from ductile.vault.mint import nonce
from ductile.vocabulary import PrincipalKind
from tests.integration.daemon import REPO
from tests.integration.test_secrets_cli import ductile, key

PLUGINS = REPO / "tests" / "plugins"


def make_vault(conf: Path, nonce_text: str) -> None:
    identity = key(conf / "age.key")
    doc = VaultDocument(principals={CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=nonce_text)})
    blob = BlobFile(conf / "vault.age")
    blob.commit(blob.prepare(doc, [identity.to_public()]))


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """Two plugins (copied, so a test may change their bytes), a vault with its nonce, a lock."""
    directory = tmp_path / "conf"
    for name in ("behave", "catlike"):
        shutil.copytree(PLUGINS / name, directory / "plugins" / name)
    (directory / "config.yaml").write_text(yaml.safe_dump({
        "plugin_roots": ["plugins"], "state": {"path": "data/ductile.db"},
        "plugins": {"behave": {"enabled": True}, "catlike": {"enabled": True}},
    }))
    write_checksums(directory, Checksums(generated_at="2026-11-27T10:00:00Z"))
    return directory


def lock(*args: str, conf: Path, home: Path) -> tuple[int, str, str]:
    done = ductile("plugin", "lock", *args, "--config-dir", str(conf), home=home)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_plugin_lock_records_the_keyed_fingerprints_and_the_dispatcher_can_verify_them(conf: Path, home: Path) -> None:
    secret_nonce = nonce()
    make_vault(conf, secret_nonce)
    code, out, err = lock("behave", conf=conf, home=home)
    assert (code, err) == (0, "")
    lock_file = read_checksums(conf)
    assert lock_file is not None
    [entry] = lock_file.plugin_fingerprints
    expected = plugin_fingerprint(conf / "plugins/behave/manifest.yaml", conf / "plugins/behave/run.py",
                                  FingerprintKey.from_nonce(secret_nonce))
    assert (entry.name, entry.manifest_hash, entry.entrypoint_hash) == ("behave", expected.manifest, expected.entrypoint)
    assert out == f'Attested plugin "behave" (entrypoint {expected.entrypoint[:12]}, manifest {expected.manifest[:12]}).\n'
    assert stat.S_IMODE((conf / ".checksums").stat().st_mode) == 0o600
    assert lock_file.version == 2 and "version: 2" in (conf / ".checksums").read_text()


def test_a_dry_run_writes_nothing(conf: Path, home: Path) -> None:
    make_vault(conf, nonce())
    before = (conf / ".checksums").read_bytes()
    code, out, _ = lock("behave", "--dry-run", conf=conf, home=home)
    assert code == 0 and out.startswith('Dry-run: Attested plugin "behave"')
    assert (conf / ".checksums").read_bytes() == before


@pytest.mark.parametrize(("setup", "name", "message"), [
    ("vault", "nope", 'plugin "nope" is not configured; add it to config.yaml before attesting it'),
    ("gone", "catlike", 'plugin "catlike" is configured but was not discovered on disk; restore its files before attesting'),
    ("no-checksums", "behave", "no .checksums: run 'ductile config lock' first"),
    ("no-vault", "behave", "plugin lock needs the vault fingerprint nonce: run 'ductile vault init' first"),
    ("no-key", "behave", "plugin lock needs the age key"),
])
def test_plugin_lock_refusals(conf: Path, home: Path, setup: str, name: str, message: str) -> None:
    if setup != "no-key":
        key(conf / "age.key") if setup == "no-vault" else make_vault(conf, nonce())
    if setup == "gone":
        shutil.rmtree(conf / "plugins" / "catlike")
    if setup == "no-checksums":
        (conf / ".checksums").unlink()
    before = (conf / ".checksums").read_bytes() if (conf / ".checksums").exists() else None
    code, out, err = lock(name, conf=conf, home=home)
    assert (code, out) == (1, "")
    assert err == f"error: {message}\n"
    assert ((conf / ".checksums").read_bytes() if before is not None else None) == before


def test_lock_all_previews_then_commits_only_with_the_current_code(conf: Path, home: Path) -> None:
    make_vault(conf, nonce())
    code, out, _ = lock("--all", conf=conf, home=home)
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["+ behave", "+ catlike"]
    assert lines[2].startswith("ductile plugin lock --all ") and len(lines[2].split()[-1]) == 5
    preview_code = lines[2].split()[-1]
    assert read_checksums(conf) == Checksums(generated_at="2026-11-27T10:00:00Z")  # a preview writes nothing

    wrong = "00000" if preview_code != "00000" else "11111"
    code, out, err = lock("--all", wrong, conf=conf, home=home)
    assert (code, err) == (1, f'error: confirmation code "{wrong}" does not match the current change set (expected "{preview_code}")\n')

    code, out, _ = lock("--all", preview_code, conf=conf, home=home)
    assert code == 0 and [line.split(" (")[0] for line in out.splitlines()] == \
        ['Attested plugin "behave"', 'Attested plugin "catlike"']
    lock_file = read_checksums(conf)
    assert lock_file is not None and [e.name for e in lock_file.plugin_fingerprints] == ["behave", "catlike"]

    assert lock("--all", conf=conf, home=home)[:2] == (0, "Nothing to attest: every configured plugin matches .checksums.\n")
    with (conf / "plugins/catlike" / "manifest.yaml").open("a") as f:
        f.write("\n# changed\n")
    code, out, _ = lock("--all", conf=conf, home=home)
    assert out.splitlines()[0] == "~ catlike"
