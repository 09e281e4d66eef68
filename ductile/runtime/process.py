"""Run one plugin process: stdin in, capped stdout/stderr out, the timeout kill ladder.

Blocking by design: the dispatcher runs each attempt on a worker thread. ``subprocess.Popen``
from threads spawns about twice as fast as asyncio's subprocess transport on small machines, and
spawning is the hot path of every job. The process gets its own session (process group), and
every signal goes to the whole group so a plugin's children die with it.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

import msgspec

STDOUT_CAP = 10 * 1024 * 1024
STDERR_CAP = 64 * 1024
STDERR_HEAD = 16 * 1024
STDERR_TAIL = STDERR_CAP - STDERR_HEAD
KILL_GRACE = 5.0
_CHUNK = 1 << 16
_DRAIN_CHUNKS = STDOUT_CAP // _CHUNK + 2
_EXIT_POLL = 0.05  # without a pidfd, how often to look whether the leader exited


class ProcessResult(msgspec.Struct, frozen=True, gc=False):
    """How one plugin process ended. A Struct: made once per spawn, at a tenth of a frozen
    dataclass's cost (which sets each field through ``object.__setattr__``)."""

    stdout: bytes
    stderr: str
    exit_code: int | None
    duration_ms: int
    pid: int | None = None
    timed_out: bool = False
    stdout_overflow: bool = False
    spawn_error: str | None = None
    stderr_dropped: int = 0


class _StderrBuffer:
    """Keeps the first 16 KiB and the last 48 KiB once output passes 64 KiB."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = STDERR_HEAD - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > STDERR_TAIL:
                del self.tail[: len(self.tail) - STDERR_TAIL]

    def text(self) -> tuple[str, int]:
        kept = len(self.head) + len(self.tail)
        dropped = self.total - kept
        if self.total <= STDERR_CAP:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace"), 0
        joined = (
            bytes(self.head).decode("utf-8", "replace")
            + f"\n[... {dropped} bytes truncated ...]\n"
            + bytes(self.tail).decode("utf-8", "replace")
        )
        return joined, dropped


def kill_group(pid: int, proc: subprocess.Popen[bytes] | None = None, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, wait up to ``grace`` for the leader, then SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    else:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
    # Children may outlive their leader; the group goes in any case.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_process(
    argv: Sequence[str],
    stdin: bytes,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    on_spawn: Callable[[int], None] | None = None,
    kill_grace: float = KILL_GRACE,
) -> ProcessResult:
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            # Unbuffered: we read and write the pipes' fds ourselves, so no buffered wrapper (and no
            # isatty ioctl) per pipe.
            bufsize=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        return ProcessResult(
            stdout=b"", stderr="", exit_code=None, duration_ms=_ms(started),
            spawn_error=exc.strerror or str(exc),
        )
    if on_spawn is not None:
        on_spawn(proc.pid)
    deadline = started + timeout
    assert proc.stdin and proc.stdout and proc.stderr
    in_fd, out_fd, err_fd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
    out = bytearray()
    err = _StderrBuffer()
    timed_out = overflow = exited = False
    # poll(2) on the fds themselves, as subprocess does: no epoll fd to create and close for three
    # pipes, and none of selectors' per-registration bookkeeping.
    poller = select.poll()
    open_fds: set[int] = set()  # stdin, stdout and stderr while registered
    # The leader's exit ends the attempt, not EOF on its pipes: a background child may hold them.
    exit_fd = _exit_fd(proc.pid)
    try:
        # Reads must not block: after the group is killed, a grandchild that left it may still hold
        # a pipe open (see the drain below).
        os.set_blocking(out_fd, False)
        os.set_blocking(err_fd, False)
        pending = memoryview(stdin)
        if len(pending) <= select.PIPE_BUF:
            # An empty pipe takes PIPE_BUF bytes without blocking, even shrunk to one page: a
            # usual request goes in one write, with no poll for it.
            _write_all_now(proc.stdin, in_fd, pending)
        else:
            os.set_blocking(in_fd, False)
            poller.register(in_fd, select.POLLOUT)
            open_fds.add(in_fd)
        for fd in (out_fd, err_fd):
            poller.register(fd, select.POLLIN)
            open_fds.add(fd)
        if exit_fd is not None:
            poller.register(exit_fd, select.POLLIN)
        while not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # On expiry a process that has already exited is not a timeout (jobs.md §6.4).
                exited = _has_exited(proc.pid)
                timed_out = not exited
                break
            wait = remaining if exit_fd is not None else min(remaining, _EXIT_POLL)
            # poll(2) takes milliseconds; rounded up, so a wait never ends before the deadline.
            for fd, _ in poller.poll(math.ceil(wait * 1000)):
                if fd == exit_fd:
                    exited = True
                elif fd == in_fd:
                    try:
                        n = os.write(in_fd, pending[:_CHUNK])
                        pending = pending[n:]
                    except BrokenPipeError:
                        pending = pending[:0]  # plugin exited without reading: its stdout decides
                    except BlockingIOError:
                        continue
                    if not pending:
                        poller.unregister(in_fd)
                        open_fds.discard(in_fd)
                        with contextlib.suppress(BrokenPipeError):
                            proc.stdin.close()
                else:
                    overflow = _read(fd, poller, open_fds, out, err, out_fd)
                    if overflow:
                        break
            if overflow:
                break
            if exit_fd is None and not exited:
                exited = _has_exited(proc.pid)
        if exited:
            # The leader is a zombie, so its pid still names the group: end whatever it left
            # behind, then take what it wrote (bounded: nobody in the group writes any more).
            _kill_group_now(proc.pid)
            for fd in (out_fd, err_fd):
                # Bounded even if a process that left the group keeps writing.
                for _ in range(_DRAIN_CHUNKS):
                    if overflow or fd not in open_fds:
                        break
                    overflow = _read(fd, poller, open_fds, out, err, out_fd, drain=True)
            proc.wait()
        else:
            kill_group(proc.pid, proc, kill_grace)
    finally:
        if exit_fd is not None:
            os.close(exit_fd)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                f.close()
        if proc.returncode is None:
            kill_group(proc.pid, proc, 0)
    stderr_text, dropped = err.text()
    return ProcessResult(
        stdout=bytes(out[:STDOUT_CAP]) if not overflow else b"",
        stderr=stderr_text,
        exit_code=proc.returncode,
        duration_ms=_ms(started),
        pid=proc.pid,
        timed_out=timed_out,
        stdout_overflow=overflow,
        stderr_dropped=dropped,
    )


def _write_all_now(f: IO[bytes], fd: int, data: memoryview) -> None:
    """Write ``data`` (at most PIPE_BUF bytes) into the fresh stdin pipe and close it."""
    try:
        if data:
            os.write(fd, data)
    except BrokenPipeError:
        pass  # plugin exited without reading: its stdout decides
    finally:
        with contextlib.suppress(BrokenPipeError):
            f.close()


def _exit_fd(pid: int) -> int | None:
    """A pidfd that polls readable once ``pid`` exits; None where the kernel has none (< 5.3)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    """Has our child ``pid`` exited? Does not reap it, so its pid keeps naming its group."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group_now(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read(fd: int, poller: select.poll, open_fds: set[int], out: bytearray, err: _StderrBuffer, out_fd: int,
          drain: bool = False) -> bool:
    """Read one chunk of ``fd`` into ``out`` or ``err``; True once stdout passes its cap.

    ``drain``: the group is dead, so an empty pipe is done (a grandchild that left the group may
    still hold it open, and must not keep us waiting)."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        if drain:
            poller.unregister(fd)
            open_fds.discard(fd)
        return False
    if not data:
        poller.unregister(fd)
        open_fds.discard(fd)
        return False
    if fd == out_fd:
        out += data
        return len(out) > STDOUT_CAP
    err.add(data)
    return False


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
