"""Crash safety of the event log: SIGKILL a process mid-append, reopen, and lose nothing acknowledged.

The child (``log_crash_appender.py``) runs 100 concurrent appenders at durability ``full`` and
prints each event id only after its append returned. The parent kills it with SIGKILL once it
has seen enough acknowledgements, reopens the DB and checks the log and its projections. Three
rounds on the same DB: every later round also starts by recovering a crashed DB.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ductile.events.log import EventLog, verify_chain
from ductile.events.types import GatewayStarted
from ductile.projections.registry import default_runner

CHILD = Path(__file__).with_name("log_crash_appender.py")
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 3
ACKS_PER_ROUND = 2000
ROUND_TIMEOUT = 20.0


def parse_acks(lines: list[bytes]) -> set[bytes]:
    acks = set()
    for line in lines:
        assert len(line) == 32, f"unexpected child output: {line!r}"
        acks.add(bytes.fromhex(line.decode()))
    return acks


def run_and_kill(db: Path, stderr_path: Path) -> set[bytes]:
    """Start the child, read acknowledgements until ACKS_PER_ROUND, SIGKILL it; return all acks seen."""
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), "100"], stdout=subprocess.PIPE, stderr=err, cwd=REPO
        )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    acks: set[bytes] = set()
    deadline = time.monotonic() + ROUND_TIMEOUT
    try:
        while len(acks) < ACKS_PER_ROUND:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"only {len(acks)} acks after {ROUND_TIMEOUT} s; stderr: {stderr_path.read_text()}"
                )
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"child exited early ({proc.wait()}); stderr: {stderr_path.read_text()}")
            *lines, pending = (pending + chunk).split(b"\n")
            acks |= parse_acks(lines)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Lines already in the pipe were printed after their append returned: acknowledged too.
    *lines, _partial = (pending + proc.stdout.read()).split(b"\n")
    proc.stdout.close()
    acks |= parse_acks(lines)
    assert proc.returncode == -signal.SIGKILL
    return acks


def check_recovered(db: Path, acked: set[bytes]) -> int:
    log = EventLog(db, durability="full", projections=default_runner()).open_sync()
    try:
        conn = log.reader()
        positions = [p for (p,) in conn.execute("SELECT position FROM events ORDER BY position")]
        assert positions == list(range(1, len(positions) + 1))
        report = verify_chain(conn)
        assert report.ok, report
        stored = {eid for (eid,) in conn.execute("SELECT event_id FROM events")}
        lost = acked - stored
        assert not lost, f"{len(lost)} acknowledged events are missing after the crash"
        # The projections committed with the events: one queue row per enqueue, checkpoints at the head.
        enqueued = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'JobEnqueued'").fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM job_queue").fetchone() == (enqueued,)
        assert conn.execute("SELECT COUNT(*) FROM job_transitions").fetchone() == (enqueued,)
        assert {p for (p,) in conn.execute("SELECT position FROM projections")} == {len(positions)}
        # The recovered log takes new appends and extends the chain.
        log.append_sync("system", [GatewayStarted(version="test", pid=os.getpid(), at=time.time_ns())])
        assert verify_chain(conn).ok
        conn.close()
        return len(positions) + 1
    finally:
        log.close()


def test_acknowledged_appends_survive_sigkill(tmp_path):
    db = tmp_path / "state.db"
    acked: set[bytes] = set()
    for round_ in range(ROUNDS):
        acks = run_and_kill(db, tmp_path / f"child-{round_}.stderr")
        assert len(acks) >= ACKS_PER_ROUND
        acked |= acks
        total = check_recovered(db, acked)
        assert total >= len(acked) + round_ + 1
