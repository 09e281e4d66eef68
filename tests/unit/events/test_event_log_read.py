"""Conformance: reading the event log (streams, rows by position, follow)."""

from __future__ import annotations

import asyncio

import pytest

from ductile.events.log import iter_rows, read_rows, read_stream
from ductile.events.record import Recorded

from .samples import note, wait_until

pytestmark = pytest.mark.anyio

NO_POLL = 60.0  # follow() must wake on commit; a poll this slow would time the tests out


async def test_read_stream_returns_one_stream_in_version_order(open_log):
    log = await open_log()
    await log.append("a", [note(1)])
    await log.append("b", [note(2)])
    await log.append("a", [note(3), note(4)])
    conn = log.reader()
    a = read_stream(conn, "a")
    assert [(r.stream, r.version, r.position) for r in a] == [("a", 1, 1), ("a", 2, 3), ("a", 3, 4)]
    assert [r.event for r in a] == [note(1), note(3), note(4)]
    assert read_stream(conn, "missing") == []
    conn.close()


async def test_read_stream_returns_what_append_returned(open_log):
    log = await open_log()
    appended = await log.append("a", [note(1), note(2)])
    conn = log.reader()
    assert read_stream(conn, "a") == appended
    conn.close()


async def test_read_rows_pages_by_position(open_log):
    log = await open_log()
    for i in range(10):
        await log.append(f"s-{i % 2}", [note(i)])
    conn = log.reader()
    assert [r.position for r in read_rows(conn)] == list(range(1, 11))
    assert [r.position for r in read_rows(conn, 3, limit=4)] == [4, 5, 6, 7]
    assert read_rows(conn, 10) == []
    assert [r.event for r in read_rows(conn, 0)] == [note(i) for i in range(10)]
    assert [r.position for r in iter_rows(conn, 2, chunk=3)] == list(range(3, 11))
    conn.close()


async def _collect(log, n: int, from_position: int = 0, sink: list[Recorded] | None = None) -> list[Recorded]:
    out = sink if sink is not None else []
    follower = log.follow(from_position=from_position, poll=NO_POLL)
    try:
        async for rec in follower:
            out.append(rec)
            if len(out) == n:
                return out
    finally:
        await follower.aclose()
    return out


async def test_follow_yields_the_backlog_then_wakes_on_commit(open_log):
    log = await open_log()
    await log.append("s", [note(1), note(2)])
    seen: list[Recorded] = []
    follower = asyncio.ensure_future(_collect(log, 5, sink=seen))
    await wait_until(lambda: len(seen) == 2, what="the backlog")
    await log.append("s", [note(3)])
    await wait_until(lambda: len(seen) == 3, timeout=5, what="a wake-up on commit")
    await log.append("t", [note(4), note(5)])
    got = await asyncio.wait_for(follower, timeout=5)
    assert [r.position for r in got] == [1, 2, 3, 4, 5]
    assert [r.event for r in got] == [note(i) for i in range(1, 6)]


async def test_follow_resumes_after_a_position(open_log):
    log = await open_log()
    await log.append("s", [note(i) for i in range(1, 6)])
    got = await asyncio.wait_for(_collect(log, 2, from_position=3), timeout=5)
    assert [r.position for r in got] == [4, 5]


async def test_follow_sees_concurrent_appends_in_log_order(open_log):
    log = await open_log()
    total = 300
    follower = asyncio.ensure_future(_collect(log, total))
    await asyncio.gather(*(log.append(f"s-{i % 7}", [note(i)]) for i in range(total)))
    got = await asyncio.wait_for(follower, timeout=10)
    assert [r.position for r in got] == list(range(1, total + 1))
    conn = log.reader()
    assert got == read_rows(conn)
    conn.close()


async def test_commit_listeners_get_each_batch_once(open_log):
    log = await open_log()
    batches: list[list[int]] = []
    log.on_commit(lambda recs: batches.append([r.position for r in recs]))
    await asyncio.gather(*(log.append("s", [note(i)]) for i in range(50)))
    await wait_until(lambda: sum(len(b) for b in batches) == 50, what="commit listeners")
    assert [p for b in batches for p in b] == list(range(1, 51))
