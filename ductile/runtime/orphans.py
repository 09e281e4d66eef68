"""Remember which process group runs which job, so boot recovery can kill a survivor.

A file ``<state dir>/procs/<job_id>`` holds ``<pid> <start time>``. The start time (from
``/proc``) guards against killing an unrelated process that reused the PID after a reboot.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ductile.runtime.process import kill_group


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name may contain spaces; fields after the closing parenthesis are fixed.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


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

    def kill_survivor(self, job_id: str) -> bool:
        """Kill the recorded process group of ``job_id`` if that very process still runs."""
        path = self.directory / job_id
        try:
            pid_text, started = path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return False
        killed = False
        if started != "?" and _start_time(pid) == started:
            kill_group(pid)
            killed = True
        self.forget(job_id)
        return killed
