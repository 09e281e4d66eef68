"""age keys (vault.md §1): the resolution order, the mode refusal, key file parsing and writing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrage import x25519

from ductile.vault.keys import (
    AgeKeyError,
    Keyring,
    KeySource,
    encrypt,
    generate_identity,
    is_age_data,
    load_keyring,
    locate_key,
    parse_recipient,
    read_recipients_file,
    resolve_keyring,
    write_key_file,
    write_private_file,
)


def key_file(path: Path, identity: x25519.Identity | None = None, mode: int = 0o600) -> x25519.Identity:
    identity = identity or generate_identity()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# created by ductile test\n# public key: {identity.to_public()}\n{identity}\n")
    path.chmod(mode)
    return identity


@pytest.fixture
def places(tmp_path: Path) -> dict[KeySource, Path]:
    """One key file per rung of the order, each rung's own file."""
    return {
        KeySource.ENV: tmp_path / "env" / "env.key",
        KeySource.CONFIG: tmp_path / "conf" / "keys" / "configured.key",
        KeySource.CONFIG_DIR: tmp_path / "conf" / "age.key",
        KeySource.HOME: tmp_path / "home" / ".config" / "ductile" / "age.key",
    }


ORDER = [KeySource.ENV, KeySource.CONFIG, KeySource.CONFIG_DIR, KeySource.HOME]


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({KeySource.ENV, KeySource.CONFIG, KeySource.CONFIG_DIR, KeySource.HOME}, KeySource.ENV),
        ({KeySource.CONFIG, KeySource.CONFIG_DIR, KeySource.HOME}, KeySource.CONFIG),
        ({KeySource.CONFIG_DIR, KeySource.HOME}, KeySource.CONFIG_DIR),
        ({KeySource.HOME}, KeySource.HOME),
        (set(), None),
    ],
)
def test_the_first_key_in_the_order_wins(
    tmp_path: Path, places: dict[KeySource, Path], present: set[KeySource], expected: KeySource | None
) -> None:
    for source in present:
        key_file(places[source])
    environ = {"DUCTILE_AGE_KEY_FILE": str(places[KeySource.ENV])} if KeySource.ENV in present else {}
    configured = "keys/configured.key" if KeySource.CONFIG in present else None
    found = locate_key(environ, configured, tmp_path / "conf", tmp_path / "home")
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.source, found.path) == (expected, places[expected])


@pytest.mark.parametrize(
    ("environ", "configured", "message"),
    [
        ({"DUCTILE_AGE_KEY_FILE": "{tmp}/nope.key"}, None, "age key {tmp}/nope.key not found ($DUCTILE_AGE_KEY_FILE)"),
        ({}, "missing.key", "age key {tmp}/conf/missing.key not found (secrets.age_key_file)"),
    ],
)
def test_a_named_key_that_is_missing_stops_instead_of_falling_through(
    tmp_path: Path, places: dict[KeySource, Path], environ: dict[str, str], configured: str | None, message: str
) -> None:
    key_file(places[KeySource.CONFIG_DIR])  # a later rung that must not be used instead
    environ = {name: value.format(tmp=tmp_path) for name, value in environ.items()}
    with pytest.raises(AgeKeyError) as error:
        locate_key(environ, configured, tmp_path / "conf", tmp_path / "home")
    assert str(error.value) == message.format(tmp=tmp_path)


def test_configured_key_expands_home_and_an_absolute_one_is_kept(tmp_path: Path) -> None:
    key_file(tmp_path / "home" / "k.key")
    found = locate_key({}, "~/k.key", tmp_path / "conf", tmp_path / "home")
    assert found is not None and found.path == tmp_path / "home" / "k.key"
    found = locate_key({}, str(tmp_path / "home" / "k.key"), None, tmp_path / "elsewhere")
    assert found is not None and found.source is KeySource.CONFIG


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o610, 0o700 | 0o010, 0o777])
def test_a_key_with_any_group_or_other_bit_is_refused_with_the_chmod_hint(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "age.key"
    key_file(path, mode=mode)
    with pytest.raises(AgeKeyError) as error:
        load_keyring(path)
    assert str(error.value) == f"age key {path} has mode {mode:04o}; run 'chmod 600 {path}'"


@settings(max_examples=60, deadline=None)
@given(mode=st.integers(min_value=0o400, max_value=0o777))
def test_the_key_is_refused_exactly_when_group_or_other_has_a_bit(tmp_path_factory: pytest.TempPathFactory, mode: int) -> None:
    path = tmp_path_factory.mktemp("mode") / "age.key"
    key_file(path, mode=mode)
    refusal = f"age key {path} has mode {mode:04o}; run 'chmod 600 {path}'"
    if mode & 0o077:
        with pytest.raises(AgeKeyError) as error:
            load_keyring(path)
        assert str(error.value) == refusal
    else:
        assert load_keyring(path).mode == mode


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_an_owner_only_key_loads(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "age.key"
    identity = key_file(path, mode=mode)
    keyring = load_keyring(path)
    assert keyring.recipients == (str(identity.to_public()),)
    assert keyring.mode == mode


def test_the_spec_example_mode_text_is_four_octal_digits(tmp_path: Path) -> None:
    path = tmp_path / "age.key"
    key_file(path, mode=0o644)
    with pytest.raises(AgeKeyError, match=r"has mode 0644; run 'chmod 600 "):
        resolve_keyring({}, None, tmp_path, tmp_path / "home")


def test_a_key_file_holds_comments_blank_lines_and_several_identities(tmp_path: Path) -> None:
    first, second = generate_identity(), generate_identity()
    path = tmp_path / "age.key"
    path.write_text(f"# created by ductile …\n\n# public key: {first.to_public()}\n{first}\n\n   \n# old\n{second}\n")
    path.chmod(0o600)
    keyring = load_keyring(path)
    assert keyring.recipients == (str(first.to_public()), str(second.to_public()))
    for identity in (first, second):
        assert keyring.decrypt(encrypt(b"plain", [identity.to_public()])) == b"plain"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("# only a comment\n", "age key {path} holds no identity"),
        ("", "age key {path} holds no identity"),
        ("# c\nAGE-SECRET-KEY-1NOTBECH32\n", "age key {path}: line 2 is not a valid age identity"),
        ("# c\nsomething else\n", "age key {path}: line 2 is not an age identity"),
    ],
)
def test_a_bad_key_file_is_refused_naming_the_line_not_its_content(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "age.key"
    path.write_text(body)
    path.chmod(0o600)
    with pytest.raises(AgeKeyError) as error:
        load_keyring(path)
    assert str(error.value) == message.format(path=path)


def test_no_key_material_in_errors_or_repr(tmp_path: Path) -> None:
    identity = generate_identity()
    secret = str(identity)
    path = tmp_path / "age.key"
    key_file(path, identity, mode=0o644)
    with pytest.raises(AgeKeyError) as refused:
        load_keyring(path)
    path.chmod(0o600)
    keyring = load_keyring(path)
    with pytest.raises(AgeKeyError) as undecryptable:
        keyring.decrypt(encrypt(b"x", [generate_identity().to_public()]))
    # A damaged identity line: its (almost valid) text must not be echoed either.
    path.write_text(secret[:-1] + ("q" if secret[-1] != "q" else "p") + "\n")
    with pytest.raises(AgeKeyError) as damaged:
        load_keyring(path)
    for text in (str(refused.value), str(undecryptable.value), str(damaged.value), repr(keyring)):
        assert "AGE-SECRET-KEY" not in text.upper()
    assert str(identity.to_public()) in repr(keyring)


def test_a_wrong_key_cannot_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "age.key"
    key_file(path)
    with pytest.raises(AgeKeyError) as error:
        load_keyring(path).decrypt(encrypt(b"x", [generate_identity().to_public()]))
    assert str(error.value) == f"cannot decrypt with age key {path}: No matching keys found"


def test_a_new_key_file_is_0600_with_the_header_and_loads_back(tmp_path: Path) -> None:
    identity = generate_identity()
    path = tmp_path / "new.key"
    write_key_file(path, identity, "ductile secrets keygen")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines == ["# created by ductile secrets keygen", f"# public key: {identity.to_public()}", str(identity)]
    assert load_keyring(path).recipients == (str(identity.to_public()),)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.key"]  # no temp file left


def test_writing_a_key_file_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "age.key"
    path.write_text("precious")
    with pytest.raises(AgeKeyError) as error:
        write_key_file(path, generate_identity(), "ductile secrets keygen")
    assert str(error.value) == f"{path} already exists; refusing to overwrite it"
    assert path.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["age.key"]


def test_a_private_file_replaces_atomically_at_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "f.age"
    path.write_text("old")
    path.chmod(0o644)
    write_private_file(path, b"new", replace=True)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f.age"]


def test_recipients_file_skips_comments_and_refuses_a_bad_line(tmp_path: Path) -> None:
    one, two = (str(generate_identity().to_public()) for _ in range(2))
    path = tmp_path / "recipients.txt"
    path.write_text(f"# team\n{one}\n\n  {two}  \n")
    assert [str(r) for r in read_recipients_file(path)] == [one, two]
    path.write_text("age1nope\n")
    with pytest.raises(AgeKeyError, match=r"^invalid age recipient 'age1nope'$"):
        read_recipients_file(path)
    with pytest.raises(AgeKeyError, match=r"^invalid age recipient \(not an age1… public key\)$"):
        parse_recipient("x")


def test_a_private_key_given_as_a_recipient_is_not_echoed() -> None:
    secret = str(generate_identity())
    with pytest.raises(AgeKeyError) as error:
        parse_recipient(secret)
    assert secret not in str(error.value)
    assert str(error.value) == "invalid age recipient (not an age1… public key)"


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=2048))
def test_encrypt_is_armored_age_data_that_round_trips(plaintext: bytes) -> None:
    identity = x25519.Identity.generate()
    blob = encrypt(plaintext, [identity.to_public()])
    assert blob.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert is_age_data(blob)
    assert Keyring(Path("k"), [identity]).decrypt(blob) == plaintext


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"age-encryption.org/v1\n-> X25519 abc\n", True),
        (b"\n  -----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", True),
        (b"plugin_roots: [plugins]\n", False),
        (b"# age-encryption.org/v1\n", False),
        (b"", False),
    ],
)
def test_age_data_is_detected_by_content(content: bytes, expected: bool) -> None:
    assert is_age_data(content) is expected
