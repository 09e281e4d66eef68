"""Conformance: appending to the event log (positions, expected versions, idempotency, batching)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid

import pytest

from ductile.events.log import ANY, NO_STREAM, ConcurrencyError, LogClosed, WriteTx
from ductile.events.store import is_storage_error
from ductile.events.types import PluginStateChanged

from .samples import note

pytestmark = pytest.mark.anyio


def positions(log) -> list[int]:
    conn = log.reader()
    try:
        return [p for (p,) in conn.execute("SELECT position FROM events ORDER BY position")]
    finally:
        conn.close()


def count_events(log) -> int:
    conn = log.reader()
    try:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()


async def test_positions_are_gap_free_and_follow_commit_order(open_log):
    log = await open_log()
    first = await log.append("s-a", [note(1), note(2)])
    second = await log.append("s-b", [note(3)])
    assert [r.position for r in first + second] == [1, 2, 3]
    assert [(r.stream, r.version) for r in first + second] == [("s-a", 1), ("s-a", 2), ("s-b", 1)]

    results = await asyncio.gather(*(log.append(f"s-{i % 5}", [note(i), note(i)]) for i in range(60)))
    returned = sorted(r.position for recs in results for r in recs)
    assert returned == list(range(4, 4 + 120))
    # The events of one append are contiguous: nothing interleaves inside a unit of work.
    for recs in results:
        assert recs[1].position == recs[0].position + 1
    assert positions(log) == list(range(1, 124))
    assert log.head == 123


async def test_stream_versions_count_from_one_per_stream(open_log):
    log = await open_log()
    await asyncio.gather(*(log.append(f"s-{i % 3}", [note(i)]) for i in range(30)))
    conn = log.reader()
    for s in ("s-0", "s-1", "s-2"):
        versions = [
            v for (v,) in conn.execute("SELECT version FROM events WHERE stream=? ORDER BY position", (s,))
        ]
        assert versions == list(range(1, 11))
    conn.close()


async def test_expected_any_appends_whatever_the_stream_version(open_log):
    log = await open_log()
    assert (await log.append("s", [note(1)], expected=ANY))[0].version == 1
    assert (await log.append("s", [note(2)], expected=ANY))[0].version == 2


async def test_expected_no_stream_accepts_only_a_new_stream(open_log):
    log = await open_log()
    recs = await log.append("s", [note(1)], expected=NO_STREAM)
    assert recs[0].version == 1
    with pytest.raises(ConcurrencyError) as err:
        await log.append("s", [note(2)], expected=NO_STREAM)
    assert (err.value.stream, err.value.expected, err.value.actual) == ("s", NO_STREAM, 1)
    assert count_events(log) == 1


async def test_expected_exact_version_must_match_the_stream_head(open_log):
    log = await open_log()
    await log.append("s", [note(1), note(2)])
    recs = await log.append("s", [note(3)], expected=2)
    assert [r.version for r in recs] == [3]
    for stale_or_ahead in (2, 1, 7):
        with pytest.raises(ConcurrencyError) as err:
            await log.append("s", [note(4)], expected=stale_or_ahead)
        assert err.value.actual == 3
        assert err.value.expected == stale_or_ahead
    with pytest.raises(ConcurrencyError):
        await log.append("other", [note(5)], expected=1)
    assert count_events(log) == 3


async def test_concurrent_creators_of_one_stream_exactly_one_wins(open_log):
    log = await open_log()
    results = await asyncio.gather(
        *(log.append("job-race", [note(i)], expected=NO_STREAM) for i in range(20)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, list)]
    losers = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(winners) == 1 and len(losers) == 19
    assert all(e.actual == 1 for e in losers)
    assert positions(log) == [1]


async def test_reappending_the_same_event_ids_returns_the_stored_records_and_writes_nothing(open_log):
    log = await open_log()
    ids = [uuid.uuid4().bytes for _ in range(3)]
    events = [note(1), note(2), note(3)]
    stored = await log.append("s", events, expected=NO_STREAM, event_ids=ids)
    await log.append("t", [note(9)])
    stats_before = (log.stats.events, log.head, count_events(log))

    # A retry with the original expectation would be a ConcurrencyError if it were a new append.
    again = await log.append("s", events, expected=NO_STREAM, event_ids=ids)

    assert again == stored
    assert [r.event_id for r in again] == ids
    assert (log.stats.events, log.head, count_events(log)) == stats_before


async def test_duplicate_appends_in_one_batch_are_stored_once(open_log):
    log = await open_log()
    ids = [uuid.uuid4().bytes]
    results = await asyncio.gather(*(log.append("s", [note(1)], event_ids=ids) for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert positions(log) == [1]


async def test_event_ids_must_match_events_one_to_one(open_log):
    log = await open_log()
    with pytest.raises(ValueError, match="one to one"):
        await log.append("s", [note(1), note(2)], event_ids=[uuid.uuid4().bytes])
    assert count_events(log) == 0


async def test_a_failing_unit_is_rolled_back_alone_while_its_batch_commits(open_log):
    log = await open_log()
    units = 200
    entered, release = threading.Event(), threading.Event()

    def gate(tx: WriteTx) -> None:
        # Holds the writer so that every unit below is queued before the next batch starts.
        entered.set()
        release.wait(10)
        tx.append("gate", [note(0)])

    class Boom(Exception):
        pass

    def unit(i: int):
        def work(tx: WriteTx) -> int:
            recs = tx.append("shared", [note(i)])
            tx.append(f"own-{i}", [note(i)])
            if i % 7 == 3:
                raise Boom(i)
            return recs[0].version

        return work

    gate_done = asyncio.ensure_future(log.submit(gate))
    assert await asyncio.to_thread(entered.wait, 10)
    tasks = [asyncio.ensure_future(log.submit(unit(i))) for i in range(units)]
    await asyncio.sleep(0)  # one loop turn: every task puts its unit on the writer's queue
    release.set()
    await gate_done
    results = await asyncio.gather(*tasks, return_exceptions=True)

    failed = [i for i, r in enumerate(results) if isinstance(r, Boom)]
    assert failed == [i for i in range(units) if i % 7 == 3]
    assert all(isinstance(results[i], Boom) and results[i].args == (i,) for i in failed)
    ok_versions = [r for r in results if not isinstance(r, BaseException)]
    # The rolled-back units left no trace, not even a hole in the versions of the shared stream.
    assert ok_versions == list(range(1, len(ok_versions) + 1))
    # The gate's batch plus one batch for all 200 units: they shared one transaction.
    assert log.stats.batches == 2
    assert log.stats.batches < units
    assert log.stats.units == units + 1

    conn = log.reader()
    streams = {s for (s,) in conn.execute("SELECT DISTINCT stream FROM events")}
    conn.close()
    assert all(f"own-{i}" not in streams for i in failed)
    assert all(f"own-{i}" in streams for i in range(units) if i not in failed)
    assert positions(log) == list(range(1, 1 + 1 + 2 * len(ok_versions)))


async def test_a_new_stream_that_exists_refuses_its_unit_alone_while_its_batch_commits(open_log):
    # The conflict surfaces in the store's own statement (UNIQUE(stream, version)), which on
    # PostgreSQL spoils the transaction: the batch runs again, each unit in its savepoint.
    log = await open_log()
    await log.append("taken", [note(0)], expected=NO_STREAM)
    entered, release = threading.Event(), threading.Event()

    def gate(tx: WriteTx) -> None:
        entered.set()
        release.wait(10)

    gate_done = asyncio.ensure_future(log.submit(gate))
    assert await asyncio.to_thread(entered.wait, 10)
    streams = [f"new-{i}" for i in range(5)] + ["taken"] + [f"new-{i}" for i in range(5, 10)]
    tasks = [asyncio.ensure_future(log.append(s, [note(1), note(2)], expected=NO_STREAM)) for s in streams]
    await asyncio.sleep(0)
    release.set()
    await gate_done
    results = await asyncio.gather(*tasks, return_exceptions=True)

    refused = results[5]
    assert isinstance(refused, ConcurrencyError) and (refused.stream, refused.actual) == ("taken", 1)
    assert all(not isinstance(r, BaseException) and [x.version for x in r] == [1, 2]
               for i, r in enumerate(results) if i != 5)
    assert log.stats.batches == 3  # the first append, the gate, and the ten units together
    assert positions(log) == list(range(1, 1 + 1 + 2 * 10))


async def test_concurrent_submits_share_batches(open_log):
    log = await open_log()
    units = 500
    await asyncio.gather(*(log.append(f"s-{i}", [note(i)]) for i in range(units)))
    assert log.stats.units == units
    assert log.stats.events == units
    assert log.stats.batches < units


async def test_submit_returns_the_units_result(open_log):
    log = await open_log()

    def work(tx: WriteTx) -> tuple[int, int]:
        tx.append("s", [note(1)])
        return tx.stream_version("s"), tx.head_position

    assert await log.submit(work) == (1, 1)


async def test_submit_after_close_is_refused(open_log):
    log = await open_log()
    await log.aclose()
    with pytest.raises(LogClosed):
        await log.append("s", [note(1)])


async def test_reopened_log_continues_positions_and_versions(open_log, db_path, durability):
    log = await open_log()
    await log.append("s", [note(1), note(2)])
    await log.aclose()
    reopened = await open_log()
    assert reopened.head == 2
    recs = await reopened.append("s", [note(3)], expected=2)
    assert (recs[0].position, recs[0].version) == (3, 3)


@pytest.mark.sqlite_only  # PRAGMA max_page_count: SQLite's own way to make a full disk
async def test_a_full_disk_fails_the_append_and_marks_the_log_unwritable_until_a_commit(open_log) -> None:
    log = await open_log()
    await log.append("s", [note(1)])

    def cap_at_current_size(tx: WriteTx) -> None:  # as good as a full disk: the file may not grow
        size = tx.conn.execute("PRAGMA page_count").fetchone()[0]
        tx.conn.execute(f"PRAGMA max_page_count = {size}")

    await log.submit(cap_at_current_size)
    assert log.unwritable is None
    big = PluginStateChanged(plugin="p", state={"blob": "x" * 300_000}, at=1)
    with pytest.raises(sqlite3.OperationalError) as failed:
        await log.append("s", [big])
    assert is_storage_error(failed.value)
    assert log.unwritable == "database or disk is full"
    assert count_events(log) == 1

    await log.submit(lambda tx: tx.conn.execute("PRAGMA max_page_count = 1073741823"))
    await log.append("s", [big])
    assert log.unwritable is None
    assert count_events(log) == 2
    assert not is_storage_error(ConcurrencyError("s", 1, 2))
