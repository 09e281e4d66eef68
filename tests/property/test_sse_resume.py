"""SSE resume is lossless: for any cut point, frames(before) + frames(resumed) == frames(all).
On every store (tests/stores.py)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ductile.events.log import EventLog
from ductile.events.store import EventStore
from ductile.events.types import EventBase, JobEnqueued, JobFailed, JobRecovered
from ductile.runtime.event_feed import Types, frames_after
from ductile.runtime.observations import LAST_INDEX, FrameId, WireFrame
from tests.stores import FreshStore

# Events yielding one, two and three frames (job.enqueued + router.enqueued; retry_exhausted +
# job.failed + poll.completed), so cuts land on extra frames ``N.k`` too.
KINDS = st.sampled_from(["enqueued", "routed", "failed_poll", "recovered"])
TYPES = ["job.enqueued", "router.enqueued", "job.retry_exhausted", "job.failed", "poll.completed", "job.recovered"]


def event(kind: str, n: int) -> EventBase:
    job = f"job-{n}"
    if kind in ("enqueued", "routed"):
        routed = kind == "routed"
        return JobEnqueued(at=n, job_id=job, plugin="p", command="poll", payload={}, max_attempts=1,
                           submitted_by="route" if routed else "api", parent_job_id="parent" if routed else None,
                           pipeline="pl" if routed else None, step_id="s" if routed else None)
    if kind == "failed_poll":
        return JobFailed(at=n, job_id=job, attempt=1, status="failed", outcome="error", error="e" * (n % 7),
                         reason="non_retryable", plugin="p", command="poll", schedule_id="sched")
    return JobRecovered(at=n, job_id=job, attempt=2, max_attempts=3, error="crashed", plugin="p", command="poll")


def read_all(store: EventStore, cursor: FrameId, types: Types, max_rows: int, max_bytes: int) -> list[WireFrame]:
    async def pages() -> list[WireFrame]:
        out: list[WireFrame] = []
        position = cursor
        conn = await store.connect_async()
        try:
            while True:
                page = await frames_after(conn, position, types, max_rows=max_rows, max_bytes=max_bytes)
                out += page.frames
                assert page.cursor >= position
                position = page.cursor
                if page.complete:
                    return out
        finally:
            await conn.close()

    return asyncio.run(pages())


def test_resuming_at_any_frame_neither_loses_nor_repeats_a_frame(fresh_store: FreshStore) -> None:
    @settings(max_examples=fresh_store.examples(40), deadline=None)
    @given(
        kinds=st.lists(KINDS, min_size=1, max_size=25),
        cut=st.integers(min_value=0),
        whole_position=st.booleans(),
        max_rows=st.integers(min_value=1, max_value=6),
        max_bytes=st.integers(min_value=1, max_value=2000),
        types=st.none() | st.sets(st.sampled_from(TYPES), min_size=1).map(frozenset),
    )
    def run(kinds: list[str], cut: int, whole_position: bool, max_rows: int, max_bytes: int, types: Types) -> None:
        with fresh_store() as store:
            log = EventLog(store).open_sync()
            try:
                for n, kind in enumerate(kinds):
                    log.append_sync(f"job-{n}", [event(kind, n)])
                everything = read_all(store, FrameId(0), None, 1000, 1 << 30)
                ids = [f.id for f in everything]
                assert ids == sorted(ids) and len(set(ids)) == len(ids)
                at = everything[cut % len(everything)].id
                assert at is not None
                # A client's Last-Event-ID (``N`` or ``N.k``), or "everything through N" (no id).
                cursor = FrameId(at.position, LAST_INDEX) if whole_position else at
                before = [f for f in everything if f.id is not None and f.id <= cursor]
                resumed = read_all(store, cursor, types, max_rows, max_bytes)
                wanted = [f for f in everything if types is None or f.type in types]
                assert [f for f in before if types is None or f.type in types] + resumed == wanted
            finally:
                log.close()

    run()
