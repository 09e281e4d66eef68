"""Remember which process group runs which job, so boot recovery can kill a survivor.

A file ``<state dir>/procs/<job_id>`` holds ``<pid> <start time>``. The start time (from
``/proc``) guards against killing an unrelated process that reused the PID after a reboot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from ductile.runtime.process import KILL_GRACE


def _stat(pid: int) -> list[str]:
    """The fixed fields of ``/proc/<pid>/stat`` after the command name (state first); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return []
    # The command name may contain spaces; fields after the closing parenthesis are fixed.
    return stat[stat.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else None


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps orphans)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


class ProcessRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._dir = str(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def record(self, job_id: str, pid: int) -> None:
        # On every spawn: plain os calls, no pathlib, no fsync (a lost file only costs the kill).
        started = _start_time(pid) or "?"
        fd = os.open(os.path.join(self._dir, job_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{pid} {started}\n".encode())
        finally:
            os.close(fd)

    def forget(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._dir, job_id))

    def kill_survivors(self, grace: float = KILL_GRACE) -> list[str]:
        """Kill every recorded process group that still runs, all at once: SIGTERM to each, one
        shared ``grace`` for their leaders to exit, then SIGKILL to each group. Returns the job ids
        whose process was killed; every record is forgotten."""
        survivors: dict[str, int] = {}
        for path in self.directory.iterdir():
            try:
                pid_text, started = path.read_text().split()
                pid = int(pid_text)
            except (OSError, ValueError):
                pid, started = 0, "?"
            if pid > 0 and started != "?" and _start_time(pid) == started:
                survivors[path.name] = pid
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
            else:
                self.forget(path.name)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(pid) for pid in survivors.values()):
            time.sleep(0.05)
        for job_id, pid in survivors.items():
            # Children may outlive their leader; the group goes in any case.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.forget(job_id)
        return list(survivors)
