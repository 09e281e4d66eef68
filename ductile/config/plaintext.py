"""Reading a config or env file as text, refusing age-encrypted content (spec config.md §2)."""

from __future__ import annotations

from pathlib import Path

from ductile.config.errors import ConfigError

_AGE_BINARY_HEADER = b"age-encryption.org/v1"
_AGE_ARMOR_HEADER = b"-----BEGIN AGE ENCRYPTED FILE-----"


def is_age_encrypted(content: bytes) -> bool:
    """Detected by content, never by file name."""
    return content.startswith(_AGE_BINARY_HEADER) or content.lstrip().startswith(_AGE_ARMOR_HEADER)


def read_plaintext(path: Path) -> str:
    """The file's text. Decryption is not available here, so encrypted files are refused."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    if is_age_encrypted(content):
        raise ConfigError(f"{path} is age-encrypted but no age key is available")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {error.start})") from None
