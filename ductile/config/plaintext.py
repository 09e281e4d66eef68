"""Reading a config or env file as text, decrypting age-encrypted content in memory (config.md §2).

The decrypted text is only ever held in memory: nothing here writes a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path

from ductile.config.errors import ConfigError
from ductile.vault.keys import AgeKeyError, Keyring, is_age_data, resolve_keyring


class ConfigKeys:
    """The age key for encrypted config files, resolved on first need (vault.md §1 order).

    Resolving lazily keeps a plaintext-only config working with no key and with a key that would be
    refused: only a config that actually holds encrypted files depends on the key. ``configured``
    is the root file's ``secrets.age_key_file`` as written, set once the root has been read (an
    encrypted root cannot name its own key, so it needs the env variable or a default location).
    """

    def __init__(
        self, environ: Mapping[str, str], config_dir: Path, home: Path, keyring: Keyring | None = None
    ) -> None:
        self.environ = environ
        self.config_dir = config_dir
        self.home = home
        self.configured: str | None = None
        # A keyring given up front (``secrets rotate --key K``) is used as is, without resolution.
        self._resolved = keyring is not None
        self._keyring: Keyring | None = keyring

    def keyring(self) -> Keyring | None:
        if not self._resolved:
            try:
                self._keyring = resolve_keyring(self.environ, self.configured, self.config_dir, self.home)
            except AgeKeyError as error:
                raise ConfigError(str(error)) from None
            self._resolved = True
        return self._keyring


# Path -> the bytes a load reads instead of the file's: how ``config set --dry-run`` validates an
# edit without writing it (editing.substituted). Empty in every other load.
_SUBSTITUTED: ContextVar[Mapping[Path, bytes] | None] = ContextVar("config_substituted", default=None)


@contextlib.contextmanager
def substituted(path: Path, content: bytes) -> Iterator[None]:
    """Loads inside this block read ``content`` for ``path`` instead of the file."""
    token = _SUBSTITUTED.set({**(_SUBSTITUTED.get() or {}), Path(os.path.abspath(path)): content})
    try:
        yield
    finally:
        _SUBSTITUTED.reset(token)


def read_plaintext(path: Path, keys: ConfigKeys | None = None) -> str:
    """The file's text; age data is decrypted with ``keys`` (none, or no key found: refused)."""
    try:
        substituted = (_SUBSTITUTED.get() or {}).get(Path(os.path.abspath(path)))
        content = path.read_bytes() if substituted is None else substituted
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    if is_age_data(content):
        keyring = keys.keyring() if keys is not None else None
        if keyring is None:
            raise ConfigError(f"{path} is age-encrypted but no age key is available")
        try:
            content = keyring.decrypt(content)
        except AgeKeyError as error:
            raise ConfigError(f"{path}: {error}") from None
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {error.start})") from None
