"""The pid records boot recovery uses to kill plugin processes a crash left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ductile.runtime.orphans import ProcessRegistry


def test_a_forgotten_record_frees_its_slot_file_for_the_next_spawn(tmp_path: Path) -> None:
    registry = ProcessRegistry(tmp_path / "procs")
    registry.record("job-a", 4242)
    registry.record("job-b", 4243)
    assert set(registry.recorded()) == {"job-a", "job-b"}
    registry.forget("job-a")
    registry.record("job-c", 4244)
    assert set(registry.recorded()) == {"job-b", "job-c"}
    assert len(list((tmp_path / "procs").iterdir())) == 2  # job-c reused job-a's file
    registry.forget("job-b")
    registry.forget("job-c")
    assert registry.recorded() == {}
    registry.close()


def test_boot_kills_a_survivor_recorded_by_the_crashed_process_and_forgets_every_record(tmp_path: Path) -> None:
    crashed = ProcessRegistry(tmp_path / "procs")
    survivor = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        crashed.record("job-alive", survivor.pid)
        crashed.record("job-gone", 2**22 + 7)  # no such process (pid_max is at most 2**22)
        crashed.close()  # the crash: the records stay on disk
        # A record in the form earlier releases wrote: a file named after the job.
        (tmp_path / "procs" / "job-old").write_text(f"{2**22 + 8} 12345\n")
        booted = ProcessRegistry(tmp_path / "procs")
        assert set(booted.recorded()) == {"job-alive", "job-gone", "job-old"}
        assert booted.kill_survivors(grace=2) == ["job-alive"]
        assert survivor.wait(timeout=5) != 0
        assert booted.recorded() == {}
    finally:
        survivor.kill()
        survivor.wait()


def test_a_slot_file_reused_after_a_longer_record_holds_only_the_new_record(tmp_path: Path) -> None:
    # Records are overwritten in place, padded rather than truncated: a long record (a job id far
    # longer than a UUID) must not leave its tail behind in the next, shorter one, nor in a free slot.
    registry = ProcessRegistry(tmp_path / "procs")
    gone = 2**22 + 7  # no such process (pid_max is at most 2**22): its start time is unknown
    long_id = "job-" + "x" * 300
    registry.record(long_id, gone)
    assert registry.recorded() == {long_id: (gone, "?")}
    registry.forget(long_id)
    assert registry.recorded() == {}  # the blanked file is a free slot, for any process reading it
    registry.record("job-short", gone + 1)
    assert registry.recorded() == {"job-short": (gone + 1, "?")}
    assert len(list((tmp_path / "procs").iterdir())) == 1
    registry.close()
