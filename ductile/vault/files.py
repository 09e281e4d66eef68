"""Durable file writes for the vault's files (vault.md §1, §8): the blob and the key files.

Every file written here is created 0600 and made durable the same way: data fsynced before it is
named, the directory fsynced after it is named. A crash therefore leaves either the old file or the
new one, never a torn one, and no backup copy: a stale copy of the blob would still open with a key
that a rotation retired.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

FILE_MODE = 0o600
TEMP_PREFIX = ".vault-"  # the blob's temp files: `.vault-*` beside the blob (vault.md §1)
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}")  # only ours: never an operator's file


def fsync_dir(directory: Path) -> None:
    """Make a rename or an unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_durable(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist) as 0600 with ``data`` and fsync it. ``O_EXCL`` and
    ``O_NOFOLLOW``: never written over, never through a planted symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may only have removed bits; say the mode outright
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)


def _temp_beside(path: Path, prefix: str) -> Path:
    return path.parent / f"{prefix}{secrets.token_hex(8)}"


def write_new(path: Path, data: bytes, *, temp_prefix: str = TEMP_PREFIX) -> None:
    """Create ``path`` as 0600 with ``data``, all or nothing; ``FileExistsError`` if anything is
    there. The data is made durable in a temp file first and then hard-linked to ``path`` (a link
    never replaces an existing name), so a crash leaves no torn key file under the real name."""
    temp = _temp_beside(path, temp_prefix)
    try:
        _write_durable(temp, data)
        os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_dir(path.parent)


def replace(path: Path, data: bytes, *, temp_prefix: str = TEMP_PREFIX,
            before_rename: Callable[[], None] | None = None) -> None:
    """Replace ``path`` atomically: a temp file (`.vault-*` for the blob) in the same directory, chmod 0600, write, fsync,
    rename over ``path``, fsync the directory. The result is 0600 whatever the old file's mode was.
    On any failure the temp file is removed and ``path`` is untouched.

    ``before_rename`` runs once the temp file is durable and before it is named: a crash test's
    hook for "during the write, before the rename" (vault.md §8's crash table)."""
    temp = _temp_beside(path, temp_prefix)
    try:
        _write_durable(temp, data)
        if before_rename is not None:
            before_rename()
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete `.vault-*` temp files a crashed write left in ``directory``; return what was removed.
    Each holds a whole blob encrypted to the keys of its day, so after a rotation it would be
    exactly the stale copy that must not exist."""
    removed = []
    for temp in sorted(directory.glob(f"{TEMP_PREFIX}*")):
        if not _TEMP_NAME.fullmatch(temp.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
            removed.append(temp)
    if removed:
        fsync_dir(directory)
    return removed
