"""Replacing a file all or nothing: the one way config files, ``.checksums`` and restored files are
written.

The data goes to a temp file beside the target (``O_EXCL | O_NOFOLLOW``: never an existing name,
never through a planted link), is fsynced, takes its mode and the previous file's owner, and is
renamed over the target; the directory is fsynced after. A crash leaves the old file or the new one,
never a torn one. (The vault's own files have stricter rules: ``ductile/vault/files.py``.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

NEW_FILE_MODE = 0o600


def replace_file(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically. ``mode`` None keeps the previous file's mode (0600 for
    a new file); the previous file's owner is kept when the writer may set it (root editing another
    user's config)."""
    try:
        previous: os.stat_result | None = path.stat()
    except FileNotFoundError:
        previous = None
    if mode is None:
        mode = previous.st_mode & 0o7777 if previous is not None else NEW_FILE_MODE
    temp = path.parent / f".{path.name}.{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)  # whatever the umask
            if previous is not None and (previous.st_uid, previous.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, previous.st_uid, previous.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
