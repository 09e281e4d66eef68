"""Remember which process group runs which job, so boot recovery can kill a survivor.

A file ``<state dir>/procs/<job_id>`` holds ``<pid> <start time>``. The start time (from
``/proc``) guards against killing an unrelated process that reused the PID after a reboot.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ductile.runtime.process import kill_group


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; fields after the closing parenthesis are fixed.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


class ProcessRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def record(self, job_id: str, pid: int) -> None:
        started = _start_time(pid) or "?"
        (self.directory / job_id).write_text(f"{pid} {started}\n")

    def forget(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / job_id).unlink()

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
