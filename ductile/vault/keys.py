"""age keys (vault.md §1): where the key is, refusing a readable-by-others key, parsing and writing key files.

A leaf: plain inputs in (an environment mapping, the configured path, the config dir, the home
directory), so the config loader and the CLI resolve the key the same way. No message, exception
or repr here ever carries key material: a bad line is named by its number, never quoted.

``pyrage`` is imported inside the functions that need it, so importing this module (which the
config loader does) costs nothing for ``ductile version``.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from pyrage.x25519 import Identity, Recipient

KEY_FILE_ENV = "DUCTILE_AGE_KEY_FILE"
KEY_FILE_NAME = "age.key"
HOME_KEY_FILE = Path(".config") / "ductile" / KEY_FILE_NAME  # under the home directory
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
RECIPIENT_PREFIX = "age1"
_OTHERS_BITS = stat.S_IRWXG | stat.S_IRWXO
AGE_MAGIC = b"age-encryption.org/v1"  # how binary age data begins
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"  # how armored age data begins


class AgeKeyError(Exception):
    """A key that cannot be used. The message names the file, never its content."""


class KeySource(enum.StrEnum):
    """Which rung of the resolution order found the key (vault.md §1)."""

    ENV = "env"  # $DUCTILE_AGE_KEY_FILE
    CONFIG = "config"  # secrets.age_key_file
    CONFIG_DIR = "config_dir"  # <configDir>/age.key
    HOME = "home"  # ~/.config/ductile/age.key


# A key named explicitly (the first two rungs) must be there: silently falling through to another
# key, or to no encryption at all, would hide a typo until the first secret is written in plaintext.
_NAMED = frozenset({KeySource.ENV, KeySource.CONFIG})


class KeyLocation(msgspec.Struct, frozen=True):
    path: Path  # absolute
    source: KeySource


def locate_key(
    environ: Mapping[str, str],
    configured: Path | str | None,
    config_dir: Path | None,
    home: Path,
) -> KeyLocation | None:
    """The key file to use, first hit wins; None = no key anywhere (encryption off).

    ``configured`` is ``secrets.age_key_file`` (relative to ``config_dir``, ``~`` expanded); the
    config loader's ``SecretsConfig.age_key_file`` is already absolute. A key named by
    ``$DUCTILE_AGE_KEY_FILE`` or ``configured`` that is missing raises AgeKeyError (boot stops).
    """
    candidates: list[tuple[str, KeySource]] = []
    from_env = environ.get(KEY_FILE_ENV, "").strip()
    if from_env:
        candidates.append((from_env, KeySource.ENV))
    if configured is not None and str(configured).strip():
        candidates.append((str(configured), KeySource.CONFIG))
    if config_dir is not None:
        candidates.append((str(config_dir / KEY_FILE_NAME), KeySource.CONFIG_DIR))
    candidates.append((str(home / HOME_KEY_FILE), KeySource.HOME))
    for text, source in candidates:
        path = _absolute(text, config_dir if source is KeySource.CONFIG else None, home)
        if os.path.lexists(path):
            return KeyLocation(path=path, source=source)
        if source in _NAMED:
            raise AgeKeyError(f"age key {path} not found ({_described(source)})")
    return None


def _described(source: KeySource) -> str:
    return f"${KEY_FILE_ENV}" if source is KeySource.ENV else "secrets.age_key_file"


def _absolute(text: str, base: Path | None, home: Path) -> Path:
    if text == "~" or text.startswith("~/"):
        text = str(home) + text[1:]
    path = Path(text)
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()) / path
    return Path(os.path.normpath(path))


def key_mode(path: Path) -> int:
    """The permission bits of the key file (symlinks followed); AgeKeyError when it cannot be stat'ed."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError as error:
        raise AgeKeyError(f"age key {path} cannot be read: {error.strerror or error}") from None


def mode_text(mode: int) -> str:
    """``0600``: four octal digits, as ``vault status`` and the refusal show it."""
    return f"{mode:04o}"


def check_key_mode(path: Path) -> int:
    """Refuse a key any group or other bit opens up; returns the mode."""
    mode = key_mode(path)
    if mode & _OTHERS_BITS:
        raise AgeKeyError(f"age key {path} has mode {mode_text(mode)}; run 'chmod 600 {path}'")
    return mode


class Keyring:
    """The identities of one key file. Its repr names the file and the public keys only."""

    __slots__ = ("_identities", "mode", "path")

    def __init__(self, path: Path, identities: Iterable[Identity], mode: int = 0o600) -> None:
        self.path = path
        self.mode = mode
        self._identities: tuple[Identity, ...] = tuple(identities)
        if not self._identities:
            raise AgeKeyError(f"age key {path} holds no identity")

    @property
    def identities(self) -> tuple[Identity, ...]:
        return self._identities

    @property
    def recipients(self) -> tuple[str, ...]:
        """The public ``age1…`` recipient of each identity, in file order."""
        return tuple(str(identity.to_public()) for identity in self._identities)

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of age data (armored or binary); AgeKeyError when no identity matches."""
        import pyrage

        try:
            return pyrage.decrypt(data, list(self._identities))
        except pyrage.DecryptError as error:
            # pyrage's text ("No matching keys found", "failed to fill whole buffer") holds no key
            # material and no plaintext, and tells a wrong key from damaged data.
            raise AgeKeyError(f"cannot decrypt with age key {self.path}: {error}") from None

    def __repr__(self) -> str:
        return f"Keyring(path={str(self.path)!r}, recipients={list(self.recipients)!r})"


def load_keyring(path: Path) -> Keyring:
    """Read a key file after the mode check; AgeKeyError names the file (and a bad line's number)."""
    mode = check_key_mode(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AgeKeyError(f"age key {path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise AgeKeyError(f"age key {path} is not a text file") from None
    return Keyring(path, parse_identities(text, path), mode)


def parse_identities(text: str, path: Path) -> list[Identity]:
    """Every ``AGE-SECRET-KEY-1…`` line; ``#`` comments and blank lines skipped, anything else refused."""
    from pyrage import IdentityError
    from pyrage.x25519 import Identity

    identities: list[Identity] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(IDENTITY_PREFIX):
            raise AgeKeyError(f"age key {path}: line {number} is not an age identity")
        try:
            identities.append(Identity.from_str(line))
        except IdentityError:
            raise AgeKeyError(f"age key {path}: line {number} is not a valid age identity") from None
    if not identities:
        raise AgeKeyError(f"age key {path} holds no identity")
    return identities


def generate_identity() -> Identity:
    from pyrage.x25519 import Identity

    return Identity.generate()


def key_file_text(identity: Identity, created_by: str) -> str:
    """The age-keygen layout with Ductile's header: ``# created by <created_by>``, ``# public key:``."""
    return f"# created by {created_by}\n# public key: {identity.to_public()}\n{identity}\n"


def write_key_file(path: Path, identity: Identity, created_by: str) -> None:
    """A new key file, mode 0600, atomic; refuses to replace anything at ``path``."""
    write_private_file(path, key_file_text(identity, created_by).encode(), replace=False)


def parse_recipient(text: str) -> Recipient:
    from pyrage import RecipientError
    from pyrage.x25519 import Recipient

    given = text.strip()
    try:
        return Recipient.from_str(given)
    except RecipientError:
        # Quote it only when it looks like a public key: a private key pasted here by mistake
        # must not be echoed to a terminal or a CI log.
        shown = repr(given) if given.startswith(RECIPIENT_PREFIX) and given.isalnum() else "(not an age1… public key)"
        raise AgeKeyError(f"invalid age recipient {shown}") from None


def read_recipients_file(path: Path) -> list[Recipient]:
    """One ``age1…`` per line; ``#`` comments and blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else "not readable text"
        raise AgeKeyError(f"recipients file {path}: {detail}") from None
    lines = (line.strip() for line in text.splitlines())
    return [parse_recipient(line) for line in lines if line and not line.startswith("#")]


def encrypt(plaintext: bytes, recipients: Iterable[Recipient]) -> bytes:
    """``plaintext`` for every recipient, ASCII-armored (the vault and ``secrets encrypt`` alike)."""
    import pyrage

    chosen = list(recipients)
    if not chosen:
        raise ValueError("age encryption needs at least one recipient")
    sealed: bytes = pyrage.encrypt(plaintext, chosen, armored=True)
    return sealed


def is_age_data(content: bytes) -> bool:
    """age data, binary or armored, detected by content and never by file name."""
    return content.startswith(AGE_MAGIC) or content.lstrip().startswith(ARMOR_BEGIN)


def write_private_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600 so that a crash leaves the old file or the new one,
    never a ``.bak`` nor a temp file (``files.replace`` / ``files.write_new``); not ``replace``:
    refuses when ``path`` exists."""
    from ductile.vault import files

    try:
        if replace:
            files.replace(path, data, temp_prefix=f".{path.name}-")
        else:
            files.write_new(path, data, temp_prefix=f".{path.name}-")
    except FileExistsError:
        raise AgeKeyError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as error:
        raise AgeKeyError(f"cannot write {path}: {error.strerror or error}") from None


def resolve_keyring(
    environ: Mapping[str, str],
    configured: Path | str | None,
    config_dir: Path | None,
    home: Path,
) -> Keyring | None:
    """``locate_key`` then ``load_keyring``: the key in use, or None when there is none anywhere."""
    location = locate_key(environ, configured, config_dir, home)
    return None if location is None else load_keyring(location.path)
