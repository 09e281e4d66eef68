"""Remember which process group runs which job, so boot recovery can kill a survivor.

Each running spawn owns one *slot file* ``<state dir>/procs/slot-<n>`` holding
``<pid> <start time> <job_id>``, padded with spaces to a fixed width; a blank (or empty) file is a
free slot. The files are created once and reused, and every record and every blank is the same
width, so a job costs two overwrites in place (one write each, no truncate) instead of creating
and unlinking a file (two directory updates). Files named after a job id holding
``<pid> <start time>`` (written by earlier releases) are read alike. The start time (from
``/proc``) guards against killing an unrelated process that reused the PID after a reboot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from ductile.runtime.process import KILL_GRACE


def _stat(pid: int) -> list[str]:
    """The fixed fields of ``/proc/<pid>/stat`` after the command name (state first); [] if gone."""
    # Plain os calls: this runs on every spawn, and a file object would add an fstat, an ioctl and
    # a seek to the open and the read.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return []
    try:
        stat = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return []
    finally:
        os.close(fd)
    # The command name may contain spaces; fields after the closing parenthesis are fixed.
    return stat[stat.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else None


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps orphans)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


# A record's width: a pid, a start time and a job id (a UUID, 36 characters) take about 70.
RECORD_WIDTH = 128


class ProcessRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._dir = str(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._free: list[int] = []  # fds of blank slot files
        self._held: dict[str, int] = {}  # job id -> fd of the slot file recording it
        self._width: dict[int, int] = {}  # fd -> its file's length (RECORD_WIDTH unless a record was longer)
        self._files = 0

    def record(self, job_id: str, pid: int) -> None:
        # On every spawn: plain os calls on a file kept open, no fsync (a lost record only costs the kill).
        line = f"{pid} {_start_time(pid) or '?'} {job_id}"
        with self._lock:
            if self._free:
                fd = self._free.pop()
            else:
                self._files += 1
                path = os.path.join(self._dir, f"slot-{self._files}")
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                self._width[fd] = RECORD_WIDTH
            self._held[job_id] = fd
            # Padded to the file's whole length, so no earlier, longer record shows through.
            width = self._width[fd] = max(self._width[fd], len(line) + 1)
        os.pwrite(fd, f"{line:<{width - 1}}\n".encode(), 0)

    def forget(self, job_id: str) -> None:
        with self._lock:
            fd = self._held.pop(job_id, None)
            if fd is None:
                return
            width = self._width[fd]
        os.pwrite(fd, b" " * (width - 1) + b"\n", 0)
        with self._lock:
            self._free.append(fd)

    def close(self) -> None:
        """Close the slot files; what they record stays on disk for the next boot."""
        with self._lock:
            fds = [*self._free, *self._held.values()]
            self._free.clear()
            self._held.clear()
            self._width.clear()
        for fd in fds:
            os.close(fd)

    def recorded(self) -> dict[str, tuple[int, str]]:
        """job id -> (pid, start time) of every spawn recorded and not forgotten, in any process."""
        out: dict[str, tuple[int, str]] = {}
        for path in self.directory.iterdir():
            try:
                fields = path.read_text().split()
            except OSError:
                continue
            if len(fields) not in (2, 3):
                continue  # a free slot, blank or empty (or a torn write: no process to find either way)
            job_id = fields[2] if len(fields) == 3 else path.name
            try:
                out[job_id] = (int(fields[0]), fields[1])
            except ValueError:
                continue
        return out

    def _clear(self) -> None:
        """Forget every record on disk (boot, before any slot runs)."""
        for path in self.directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def kill_survivors(self, grace: float = KILL_GRACE) -> list[str]:
        """Kill every recorded process group that still runs, all at once: SIGTERM to each, one
        shared ``grace`` for their leaders to exit, then SIGKILL to each group. Returns the job ids
        whose process was killed; every record is forgotten."""
        survivors: dict[str, int] = {}
        for job_id, (pid, started) in self.recorded().items():
            if pid > 0 and started != "?" and _start_time(pid) == started:
                survivors[job_id] = pid
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(pid) for pid in survivors.values()):
            time.sleep(0.05)
        for pid in survivors.values():
            # Children may outlive their leader; the group goes in any case.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self._clear()
        return list(survivors)
