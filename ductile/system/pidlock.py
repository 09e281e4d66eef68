"""The PID lock: one gateway (or offline maintenance command) per state DB.

``<dir(state.path)>/<stem>.pid`` with an exclusive non-blocking ``flock``. A leftover file whose
lock is free never blocks a start; the kernel drops the lock when the holder dies, even on kill -9.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class PidLockHeld(RuntimeError):
    pass


def pid_path(state_path: Path) -> Path:
    return state_path.parent / f"{state_path.stem}.pid"


def process_records_dir(state_dir: Path) -> Path:
    """Where the dispatcher records its running plugin processes (runtime/orphans.py): runtime state
    beside the PID file, which crash recovery reads and a backup leaves out."""
    return state_dir / "procs"


def holder(path: Path) -> int | None:
    """The PID recorded in a lock file that is currently held, else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class PidLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> PidLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise PidLockHeld(
                f"failed to acquire PID lock {self.path}: another instance is running (pid {text or '?'})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PidLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
