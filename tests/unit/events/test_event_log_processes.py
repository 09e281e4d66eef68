"""Conformance: several processes appending to one log at once (issue 17: gap-free positions and
the hash chain hold under concurrent appenders from several processes, on every store)."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from ductile.events.log import ANY, EventLog, first_broken_stream, read_rows, verify_chain
from ductile.events.store import EventStore

from .samples import note

PROCESSES = 4
APPENDS = 40  # per process, each its own commit, so the processes interleave commit by commit


def _append_from_another_process(store: EventStore, durability: str, worker: int, start: object) -> None:
    start.wait(30)  # type: ignore[attr-defined]  # every process appends at once
    log = EventLog(store, durability=durability).open_sync()
    try:
        for i in range(APPENDS):
            # One stream all processes share (versions contended) and one of each process's own.
            log.append_sync("shared", [note(worker * 1000 + i)], expected=ANY)
            log.append_sync(f"worker-{worker}", [note(i), note(i + 1)])
    finally:
        log.close()


def test_concurrent_appenders_in_several_processes_keep_positions_gap_free_and_the_chain_valid(store, durability):
    EventLog(store, durability=durability).open_sync().close()  # the schema exists before the race
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, as another CLI process would be
    start = spawn.Event()
    workers = [spawn.Process(target=_append_from_another_process, args=(store, durability, w, start))
               for w in range(PROCESSES)]
    for p in workers:
        p.start()
    start.set()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    conn = store.reader()
    try:
        records = read_rows(conn)
        report = verify_chain(conn)
        broken = first_broken_stream(conn)
    finally:
        conn.close()
    total = PROCESSES * APPENDS * 3
    assert [r.position for r in records] == list(range(1, total + 1))
    assert report.ok, report.problem
    assert broken is None
    assert Counter(r.stream for r in records) == {
        "shared": PROCESSES * APPENDS, **{f"worker-{w}": 2 * APPENDS for w in range(PROCESSES)}}
    shared = [r.version for r in records if r.stream == "shared"]
    assert shared == list(range(1, PROCESSES * APPENDS + 1))
