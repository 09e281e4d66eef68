"""age-encrypted config and env files (config.md §2, §3.2): decrypted in memory with the resolved key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pyrage import x25519

from ductile.config import Config, ConfigError
from ductile.vault.keys import encrypt, generate_identity

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

CANARY = "CANARY-5f0c8d0e-env-value"


@pytest.fixture
def identity(config_dir: Path) -> x25519.Identity:
    """The default key: <configDir>/age.key, mode 0600."""
    identity = generate_identity()
    path = config_dir / "age.key"
    path.write_text(f"# created by ductile test\n{identity}\n")
    path.chmod(0o600)
    return identity


def write_encrypted(config_dir: Path, name: str, text: str, to: x25519.Identity, *, armored: bool = True) -> Path:
    import pyrage

    path = config_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encrypt(text.encode(), [to.to_public()]) if armored else pyrage.encrypt(text.encode(), [to.to_public()])
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("armored", [True, False])
def test_an_encrypted_include_loads_and_stays_encrypted_on_disk(
    write: Write, load: Load, config_dir: Path, identity: x25519.Identity, armored: bool
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [secret.yaml]\n")
    path = write_encrypted(config_dir, "secret.yaml", "service: {name: from-secret}\n", identity, armored=armored)
    before = path.read_bytes()
    config = load()
    assert config.service.name == "from-secret"
    assert path in config.files
    assert path.read_bytes() == before
    assert sorted(p.name for p in config_dir.iterdir()) == ["age.key", "config.yaml", "plugins", "secret.yaml"]


def test_an_encrypted_root_config_loads(load: Load, config_dir: Path, identity: x25519.Identity) -> None:
    write_encrypted(config_dir, "config.yaml", "plugin_roots: [plugins]\nservice: {name: sealed}\n", identity)
    assert load().service.name == "sealed"


def test_an_encrypted_env_file_sets_variables(
    write: Write, load: Load, config_dir: Path, identity: x25519.Identity
) -> None:
    write(
        "config.yaml",
        "plugin_roots: [plugins]\nenvironment_vars: {include: [.env.age]}\nservice: {name: '${NAME}'}\n",
    )
    write_encrypted(config_dir, ".env.age", f"export NAME=from-env\nTOKEN='{CANARY}'\n", identity)
    environ = {"HOME": str(config_dir.parent / "home")}
    config = load(environ)
    assert config.service.name == "from-env"
    assert environ["TOKEN"] == CANARY


def test_the_configured_key_decrypts_includes(write: Write, load: Load, config_dir: Path) -> None:
    identity = generate_identity()
    (config_dir / "keys").mkdir()
    (config_dir / "keys" / "mine.key").write_text(f"{identity}\n")
    (config_dir / "keys" / "mine.key").chmod(0o600)
    write("config.yaml", "plugin_roots: [plugins]\nsecrets: {age_key_file: keys/mine.key}\ninclude: [s.yaml]\n")
    write_encrypted(config_dir, "s.yaml", "service: {name: configured}\n", identity)
    assert load().service.name == "configured"


def test_the_env_variable_key_wins_over_the_config_dir_key(
    write: Write, load: Load, config_dir: Path, identity: x25519.Identity, tmp_path: Path
) -> None:
    other = generate_identity()
    (tmp_path / "other.key").write_text(f"{other}\n")
    (tmp_path / "other.key").chmod(0o600)
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [s.yaml]\n")
    write_encrypted(config_dir, "s.yaml", "service: {name: other}\n", other)
    environ = {"HOME": str(tmp_path / "home"), "DUCTILE_AGE_KEY_FILE": str(tmp_path / "other.key")}
    assert load(environ).service.name == "other"


@pytest.mark.parametrize(
    "header", ["age-encryption.org/v1\n-> X25519 abc\n", "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n"]
)
def test_an_encrypted_include_without_a_key_names_the_include_line(
    write: Write, load: Load, config_dir: Path, header: str
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [secret.yaml]\n")
    write("secret.yaml", header)
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"config.yaml:2: {config_dir / 'secret.yaml'} is age-encrypted but no age key is available"


def test_an_encrypted_root_without_a_key_is_refused(load: Load, config_dir: Path) -> None:
    write_encrypted(config_dir, "config.yaml", "plugin_roots: [plugins]\n", generate_identity())
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"{config_dir / 'config.yaml'} is age-encrypted but no age key is available"


def test_an_encrypted_env_file_with_the_wrong_key_names_file_and_line(
    write: Write, load: Load, config_dir: Path, identity: x25519.Identity
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\nenvironment_vars:\n  include: [.env.age]\n")
    write_encrypted(config_dir, ".env.age", f"TOKEN={CANARY}\n", generate_identity())
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == (
        f"config.yaml:3: {config_dir / '.env.age'}: cannot decrypt with age key {config_dir / 'age.key'}: "
        "No matching keys found"
    )
    assert CANARY not in str(error.value)


def test_a_readable_by_others_key_is_refused_with_the_chmod_hint(
    write: Write, load: Load, config_dir: Path, identity: x25519.Identity
) -> None:
    key = config_dir / "age.key"
    key.chmod(0o644)
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [secret.yaml]\n")
    write_encrypted(config_dir, "secret.yaml", "service: {name: x}\n", identity)
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"config.yaml:2: age key {key} has mode 0644; run 'chmod 600 {key}'"


def test_a_named_key_that_is_missing_is_an_error_even_with_a_default_key(
    write: Write, load: Load, config_dir: Path, identity: x25519.Identity
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\nsecrets: {age_key_file: gone.key}\ninclude: [s.yaml]\n")
    write_encrypted(config_dir, "s.yaml", "service: {name: x}\n", identity)
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"config.yaml:3: age key {config_dir / 'gone.key'} not found (secrets.age_key_file)"


def test_a_plaintext_config_never_needs_the_key(write: Write, load: Load, config_dir: Path) -> None:
    (config_dir / "age.key").write_text("not a key at all\n")
    (config_dir / "age.key").chmod(0o644)
    write("config.yaml", "plugin_roots: [plugins]\nservice: {name: plain}\n")
    assert load().service.name == "plain"
    assert os.stat(config_dir / "age.key").st_mode & 0o777 == 0o644
