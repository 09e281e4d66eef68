"""The process runner: stdin/stdout protocol plumbing, caps, and the timeout kill ladder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ductile.runtime import process
from ductile.runtime.process import STDERR_CAP, run_process

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def script(tmp_path: Path, body: str, name: str = "p.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_request_reaches_stdin_and_stdout_is_returned(tmp_path: Path) -> None:
    p = script(tmp_path, "cat\n")
    r = run_process([p], b'{"protocol":2}\n', ENV, 5)
    assert r.stdout == b'{"protocol":2}\n'
    assert r.exit_code == 0 and not r.timed_out


def test_plugin_that_never_reads_stdin_still_answers(tmp_path: Path) -> None:
    p = script(tmp_path, "echo '{\"status\":\"ok\"}'\n")
    r = run_process([p], b"x" * 1_000_000, ENV, 5)
    assert r.stdout.strip() == b'{"status":"ok"}'


def test_stdout_over_ten_mebibytes_is_an_overflow(tmp_path: Path) -> None:
    p = script(tmp_path, "head -c 11000000 /dev/zero\n")
    r = run_process([p], b"", ENV, 10)
    assert r.stdout_overflow
    assert r.stdout == b""


def test_long_stderr_keeps_head_and_tail_with_a_marker(tmp_path: Path) -> None:
    p = script(tmp_path, "echo START >&2; head -c 200000 /dev/zero | tr '\\0' e >&2; echo END >&2; echo '{}'\n")
    r = run_process([p], b"", ENV, 10)
    assert r.stderr.startswith("START")
    assert r.stderr.rstrip().endswith("END")
    assert "bytes truncated ...]" in r.stderr
    assert r.stderr_dropped == 200000 + 10 - STDERR_CAP
    assert r.stdout == b"{}\n"


def test_timeout_kills_the_whole_group_even_children_ignoring_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    p = script(tmp_path, f"trap '' TERM\n(trap '' TERM; sleep 60) &\necho $! > {pidfile}\nsleep 60\n")
    started = time.monotonic()
    r = run_process([p], b"", ENV, 0.5, kill_grace=1.0)
    elapsed = time.monotonic() - started
    assert r.timed_out
    assert 1.4 <= elapsed < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("child survived the group SIGKILL")


def test_missing_entrypoint_is_a_spawn_error(tmp_path: Path) -> None:
    r = run_process([str(tmp_path / "nope")], b"", ENV, 5)
    assert r.spawn_error is not None
    assert "No such file" in r.spawn_error


def test_only_the_given_environment_reaches_the_plugin(tmp_path: Path) -> None:
    p = script(tmp_path, "env\n")
    r = run_process([p], b"", {**ENV, "ONLY_ME": "1"}, 5)
    names = {line.split("=", 1)[0] for line in r.stdout.decode().splitlines()}
    assert "ONLY_ME" in names
    assert "HOME" not in names


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (nobody reaps orphans in some containers) is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 5
    while not _dead(pid):
        assert time.monotonic() < deadline, f"pid {pid} outlived its plugin"
        time.sleep(0.02)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_exit_ends_the_attempt_even_while_a_child_holds_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    if not pidfd:
        monkeypatch.setattr(process, "_exit_fd", lambda pid: None)
    pidfile = tmp_path / "child.pid"
    p = script(tmp_path, f"echo '{{\"status\":\"ok\"}}'\nsleep 60 &\necho $! > {pidfile}\n")
    started = time.monotonic()
    r = run_process([p], b"", ENV, 10)
    assert time.monotonic() - started < 3
    assert not r.timed_out and r.exit_code == 0
    assert r.stdout.strip() == b'{"status":"ok"}'
    _wait_dead(int(pidfile.read_text()))


def test_background_children_with_detached_stdio_end_with_the_plugin(tmp_path: Path) -> None:
    pidfile = tmp_path / "children"
    p = script(tmp_path, f"for i in 1 2 3; do sleep 60 </dev/null >/dev/null 2>&1 & echo $! >> {pidfile}; done\n"
                         "echo '{}'\n")
    r = run_process([p], b"", ENV, 10)
    assert r.stdout == b"{}\n" and not r.timed_out
    for pid in map(int, pidfile.read_text().split()):
        _wait_dead(pid)


def test_output_written_just_before_exit_is_kept(tmp_path: Path) -> None:
    p = script(tmp_path, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo tail >&2\n")
    r = run_process([p], b"", ENV, 10)
    assert len(r.stdout) == 300001 and r.stderr == "tail\n"
