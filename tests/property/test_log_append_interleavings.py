"""Property: however concurrent appends interleave, the log stays gap-free and streams contiguous."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.events.log import ANY, NO_STREAM, ConcurrencyError, WriteTx, verify_chain
from ductile.events.record import Recorded
from ductile.events.types import PluginStateChanged
from tests.stores import FreshStore

from .state_db import fresh_log

STREAMS = 4

# One append: (stream, number of events, how the expected version is chosen, yield first?)
#   any       - expected=ANY
#   no_stream - expected=NO_STREAM (fails unless the stream is new)
#   fresh     - read the version inside the unit and expect exactly it (never fails)
#   guess     - expect the version this task last saw (stale under contention)
op = st.tuples(
    st.integers(0, STREAMS - 1),
    st.integers(1, 3),
    st.sampled_from(["any", "no_stream", "fresh", "guess"]),
    st.booleans(),
)
tasks = st.lists(st.lists(op, min_size=1, max_size=8), min_size=2, max_size=24)


@dataclass
class Outcome:
    appended: list[list[Recorded]] = field(default_factory=list)
    conflicts: list[ConcurrencyError] = field(default_factory=list)
    no_stream_wins: list[str] = field(default_factory=list)


def event(task: int, n: int) -> PluginStateChanged:
    return PluginStateChanged(plugin=f"t{task}", state={"n": n}, at=n)


async def run_task(log, index: int, ops, out: Outcome) -> None:
    seen: dict[str, int] = {}
    for n, (s, count, mode, yield_first) in enumerate(ops):
        if yield_first:
            await asyncio.sleep(0)
        stream = f"s-{s}"
        events = [event(index, n * 10 + k) for k in range(count)]
        try:
            if mode == "fresh":

                def work(tx: WriteTx, stream=stream, events=events) -> list[Recorded]:
                    return tx.append(stream, events, expected=tx.stream_version(stream))

                recs = await log.submit(work)
            else:
                expected = {"any": ANY, "no_stream": NO_STREAM}.get(mode, seen.get(stream, 0) or NO_STREAM)
                recs = await log.append(stream, events, expected=expected)
        except ConcurrencyError as exc:
            out.conflicts.append(exc)
            seen[stream] = exc.actual
            continue
        if mode == "no_stream":
            out.no_stream_wins.append(stream)
        seen[stream] = recs[-1].version
        out.appended.append(recs)


async def scenario(plan, durability: str, fresh_store: FreshStore) -> None:
    async with fresh_log(durability, store=fresh_store) as log:
        out = Outcome()
        await asyncio.gather(*(run_task(log, i, ops, out) for i, ops in enumerate(plan)))
        conn = log.reader()
        rows = conn.execute(
            "SELECT position, event_id, stream, version FROM events ORDER BY position"
        ).fetchall()
        report = verify_chain(conn)
        conn.close()

    total = sum(len(recs) for recs in out.appended)
    assert [r[0] for r in rows] == list(range(1, total + 1))
    assert report.ok and report.head == total

    by_stream: dict[str, list[int]] = {}
    for _, _, stream, version in rows:
        by_stream.setdefault(stream, []).append(version)
    for versions in by_stream.values():
        assert versions == list(range(1, len(versions) + 1))

    stored = {r[0]: r for r in rows}
    for recs in out.appended:
        # What the caller was told is what the log holds, and one append is one contiguous run.
        assert [stored[r.position][1:] for r in recs] == [(r.event_id, r.stream, r.version) for r in recs]
        assert [r.position for r in recs] == list(range(recs[0].position, recs[0].position + len(recs)))
        assert [r.version for r in recs] == list(range(recs[0].version, recs[0].version + len(recs)))

    assert all(out.no_stream_wins.count(s) <= 1 for s in set(out.no_stream_wins))
    for exc in out.conflicts:
        assert exc.actual != (0 if exc.expected == NO_STREAM else exc.expected)
    assert len(out.appended) + len(out.conflicts) == sum(len(ops) for ops in plan)


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_concurrent_appends_keep_positions_gap_free_and_versions_contiguous(durability, fresh_store):
    @settings(max_examples=fresh_store.examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plan=tasks)
    def run(plan) -> None:
        asyncio.run(scenario(plan, durability, fresh_store))

    run()
