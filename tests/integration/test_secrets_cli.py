"""``ductile secrets`` (vault.md §13) run as the real command: keygen, encrypt, rotate and its refusals."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyrage import x25519

from ductile.config import ConfigError, find_config, load_config
from ductile.vault.keys import encrypt, generate_identity, load_keyring
from tests.integration.daemon import REPO

CANARY = "CANARY-0d9e4c52-secrets-cli"


def ductile(
    *args: str, home: Path, stdin: bytes = b"", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DUCTILE_CONFIG_DIR", "DUCTILE_AGE_KEY_FILE")}
    environ.update({"HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "ductile.cli.main", *args],
        input=stdin, capture_output=True, timeout=60, cwd=cwd or home, env=environ,
    )


def key(path: Path) -> x25519.Identity:
    identity = generate_identity()
    path.write_text(f"# created by ductile test\n{identity}\n")
    path.chmod(0o600)
    return identity


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A config dir whose config.yaml includes an encrypted secret.yaml (old.key) and names a vault."""
    directory = tmp_path / "conf"
    (directory / "plugins").mkdir(parents=True)
    old = key(directory / "old.key")
    (directory / "config.yaml").write_text(
        "plugin_roots: [plugins]\ninclude: [secret.yaml]\nsecrets: {age_key_file: old.key, vault_file: v/vault.age}\n"
    )
    (directory / "secret.yaml").write_bytes(
        encrypt(f"service: {{name: sealed}}\nplugins: {{}}\n# {CANARY}\n".encode(), [old.to_public()])
    )
    return directory


def test_keygen_prints_an_identity_and_its_recipient(home: Path) -> None:
    done = ductile("secrets", "keygen", home=home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "# created by ductile secrets keygen"
    identity = x25519.Identity.from_str(lines[2])
    assert lines[1] == f"# public key: {identity.to_public()}"
    assert done.stderr.decode() == f"Public recipient: {identity.to_public()}\n"


def test_keygen_out_writes_0600_and_never_overwrites(home: Path) -> None:
    out = home / "age.key"
    done = ductile("secrets", "keygen", "--out", str(out), home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    keyring = load_keyring(out)
    assert done.stderr.decode() == f"Public recipient: {keyring.recipients[0]}\n"
    before = out.read_bytes()
    again = ductile("secrets", "keygen", "--out", str(out), home=home)
    assert (again.returncode, again.stdout) == (1, b"")
    assert again.stderr.decode() == f"error: {out} already exists; refusing to overwrite it\n"
    assert out.read_bytes() == before


def test_encrypt_stdin_to_stdout_is_armored_for_every_recipient(home: Path) -> None:
    one, two = key(home / "one.key"), key(home / "two.key")
    (home / "recipients.txt").write_text(f"# team\n{two.to_public()}\n")
    done = ductile(
        "secrets", "encrypt", "--recipient", str(one.to_public()), "--recipients-file", "recipients.txt",
        home=home, stdin=CANARY.encode(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert CANARY.encode() not in done.stdout + done.stderr
    for path in (home / "one.key", home / "two.key"):
        assert load_keyring(path).decrypt(done.stdout) == CANARY.encode()


def test_encrypt_in_and_out_files_writes_0600(home: Path) -> None:
    identity = key(home / "k.key")
    (home / "plain.yaml").write_text("a: 1\n")
    done = ductile(
        "secrets", "encrypt", "--recipient", str(identity.to_public()), "--in", "plain.yaml", "--out", "sealed.age",
        home=home,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert stat.S_IMODE((home / "sealed.age").stat().st_mode) == 0o600
    assert load_keyring(home / "k.key").decrypt((home / "sealed.age").read_bytes()) == b"a: 1\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no recipients (use --recipient or --recipients-file)"),
        (("--recipient", "age1nope"), "invalid age recipient 'age1nope'"),
    ],
)
def test_encrypt_refusals(home: Path, args: tuple[str, ...], message: str) -> None:
    done = ductile("secrets", "encrypt", *args, home=home, stdin=CANARY.encode())
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == f"error: {message}\n"


def test_rotate_re_encrypts_an_encrypted_include_in_place(home: Path, conf: Path, tmp_path: Path) -> None:
    new = key(tmp_path / "new.key")
    done = ductile(
        "secrets", "rotate", "--key", str(conf / "old.key"), "--file", str(conf / "secret.yaml"),
        "--recipient", str(new.to_public()), "--config-dir", str(conf), home=home,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"Rotated {conf / 'secret.yaml'} to 1 recipient(s)\nrun 'ductile config lock'\n"
    assert CANARY.encode() not in done.stdout + done.stderr
    sealed = (conf / "secret.yaml").read_bytes()
    assert sealed.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert stat.S_IMODE((conf / "secret.yaml").stat().st_mode) == 0o600
    assert sorted(p.name for p in conf.iterdir()) == ["config.yaml", "old.key", "plugins", "secret.yaml"]
    # The config now loads with the new key only.
    with pytest.raises(ConfigError, match="No matching keys found"):
        load_config(find_config(None, str(conf)), environ={"HOME": str(home)})
    environ = {"HOME": str(home), "DUCTILE_AGE_KEY_FILE": str(tmp_path / "new.key")}
    assert load_config(find_config(None, str(conf)), environ=environ).service.name == "sealed"


def write_vault(path: Path, identity: x25519.Identity) -> bytes:
    document = {"secrets": {"x": {"value": CANARY}}, "principals": {"core": {"kind": "gateway"}}}
    sealed = encrypt(yaml.safe_dump(document).encode(), [identity.to_public()])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sealed)
    return sealed


@pytest.mark.parametrize("how", ["path", "symlink", "content"])
def test_rotate_refuses_the_vault_and_leaves_it_untouched(home: Path, conf: Path, how: str) -> None:
    old = load_keyring(conf / "old.key").identities[0]
    vault = conf / "v" / "vault.age"
    if how == "content":
        vault = conf / "elsewhere.age"  # not the configured path: caught by what it holds
    sealed = write_vault(vault, old)
    target = vault
    if how == "symlink":
        target = home / "link.age"
        target.symlink_to(vault)
    done = ductile(
        "secrets", "rotate", "--key", str(conf / "old.key"), "--file", str(target),
        "--recipient", str(generate_identity().to_public()), "--config-dir", str(conf), home=home,
    )
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == (
        f"error: rotate: {target} is the ductile vault — use 'ductile vault rotate-key' instead\n"
    )
    assert vault.read_bytes() == sealed
    assert CANARY.encode() not in done.stderr


def test_rotate_refuses_the_vault_by_path_even_before_it_is_read(home: Path, conf: Path) -> None:
    vault = conf / "v" / "vault.age"
    vault.parent.mkdir()
    vault.write_bytes(b"not even age data")
    done = ductile(
        "secrets", "rotate", "--key", str(conf / "old.key"), "--file", str(vault),
        "--recipient", str(generate_identity().to_public()), "--config-dir", str(conf), home=home,
    )
    assert done.returncode == 1
    assert "is the ductile vault" in done.stderr.decode()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("plaintext", "{file} is not age-encrypted"),
        ("wrong key", "cannot decrypt with age key {key}: No matching keys found"),
        ("key mode", "age key {key} has mode 0644; run 'chmod 600 {key}'"),
        ("no recipients", "no recipients (use --recipient or --recipients-file)"),
        ("missing file", "cannot read {file}: No such file or directory"),
    ],
)
def test_rotate_failures_leave_the_input_untouched(
    home: Path, conf: Path, tmp_path: Path, case: str, message: str
) -> None:
    file, key_path = conf / "secret.yaml", conf / "old.key"
    recipients = ["--recipient", str(generate_identity().to_public())]
    if case == "plaintext":
        file.write_text(f"service: {{name: {CANARY}}}\n")
    elif case == "wrong key":
        key_path = tmp_path / "other.key"
        key(key_path)
    elif case == "key mode":
        key_path.chmod(0o644)
    elif case == "no recipients":
        recipients = []
    elif case == "missing file":
        file = conf / "absent.yaml"
    before = {p.name: p.read_bytes() for p in conf.iterdir() if p.is_file()}
    done = ductile(
        "secrets", "rotate", "--key", str(key_path), "--file", str(file), *recipients,
        "--config-dir", str(conf), home=home,
    )
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == "error: " + message.format(file=file, key=key_path) + "\n"
    assert {p.name: p.read_bytes() for p in conf.iterdir() if p.is_file()} == before
    assert CANARY.encode() not in done.stderr


def test_rotate_without_any_config_still_refuses_a_vault_by_content(home: Path, tmp_path: Path) -> None:
    identity = key(tmp_path / "k.key")
    sealed = write_vault(tmp_path / "loose.age", identity)
    done = ductile(
        "secrets", "rotate", "--key", str(tmp_path / "k.key"), "--file", str(tmp_path / "loose.age"),
        "--recipient", str(identity.to_public()), home=home,
    )
    assert done.returncode == 1
    assert "is the ductile vault" in done.stderr.decode()
    assert (tmp_path / "loose.age").read_bytes() == sealed


def test_rotate_names_its_required_flags(home: Path) -> None:
    done = ductile("secrets", "rotate", "--file", "x", home=home)
    assert (done.returncode, done.stderr.decode()) == (1, "error: secrets rotate: --key is required\n")


def test_bare_secrets_prints_usage_and_exits_2(home: Path) -> None:
    done = ductile("secrets", home=home)
    assert done.returncode == 2
    assert b"keygen" in done.stderr and done.stdout == b""


def test_the_cli_does_not_load_age_until_a_secrets_verb_runs() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['ductile', 'version']\n"
        "try:\n    runpy.run_module('ductile.cli.main', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('pyrage' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, cwd=REPO)
    assert done.stdout.decode().splitlines()[-1] == "False", done.stderr


def test_rotate_through_a_symlink_rewrites_the_file_it_names(home: Path, conf: Path, tmp_path: Path) -> None:
    link = home / "secret-link.yaml"
    link.symlink_to(conf / "secret.yaml")
    new = key(tmp_path / "new.key")
    done = ductile(
        "secrets", "rotate", "--key", str(conf / "old.key"), "--file", str(link),
        "--recipient", str(new.to_public()), "--config-dir", str(conf), home=home,
    )
    assert done.returncode == 0, done.stderr
    assert link.is_symlink()
    assert load_keyring(tmp_path / "new.key").decrypt((conf / "secret.yaml").read_bytes()).startswith(b"service:")
