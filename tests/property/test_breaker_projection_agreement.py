"""Property: random breaker commands through the real log; the SQL projection equals the decider's fold.

As ``test_job_projection_agreement`` does for jobs: each command is decided by
``ductile.commands.breakers`` from the fold (``evolve``) of the breaker's stream as the log holds
it, and appended at that stream version; refused commands leave nothing behind. Afterwards each
``circuit_breakers`` row equals the fold of its stream, ``circuit_breaker_transitions`` lists the
stream's transitions, and a full replay reproduces what the writer kept live.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.commands import breakers
from ductile.commands.breakers import BreakerState
from ductile.events.log import NO_STREAM, WriteTx, read_stream
from ductile.events.timefmt import sql_ts
from ductile.events.types import BreakerTransitioned, EventBase, breaker_stream
from ductile.projections.registry import ALL, default_runner
from tests.stores import FreshStore

from .state_db import assert_rebuild_reproduces, fresh_log, submit_wave

NS = 1_000_000_000
KEYS = [("echo", "poll"), ("echo", "sync"), ("mail", "poll")]
TABLES = [t for p in ALL for t in p.tables]

terminal = st.fixed_dictionaries({
    "status": st.sampled_from(["succeeded", "succeeded", "failed", "timed_out", "dead", "skipped"]),
    "cancelled": st.sampled_from([False, False, False, True]),
    "threshold": st.integers(1, 3),
})
command = st.tuples(
    st.sampled_from(["terminal"] * 6 + ["probe", "reprobe", "reset"]),
    st.integers(0, len(KEYS) - 1),
    terminal,
)
waves = st.lists(st.lists(command, min_size=1, max_size=6), min_size=1, max_size=15)


def decide(kind: str, key: tuple[str, str], spec: dict[str, Any], s: BreakerState | None, seq: int,
           now: int) -> list[EventBase]:
    plugin, cmd = key
    job_id = f"job-{seq}"
    if kind == "terminal":
        return breakers.on_terminal(s or BreakerState(), plugin, cmd, job_id, spec["status"], spec["cancelled"],
                                    spec["threshold"], now)
    if kind == "probe":
        return breakers.on_probe(s or BreakerState(), plugin, cmd, job_id, now)
    if kind == "reprobe":
        return breakers.on_reprobe(s or BreakerState(), plugin, cmd, job_id, now)
    return breakers.on_reset(s, plugin, cmd, now)


def unit(kind: str, key: tuple[str, str], spec: dict[str, Any], seq: int, now: int):
    def work(tx: WriteTx) -> list[EventBase]:
        stream = breaker_stream(*key)
        history = read_stream(tx.conn, stream)
        s: BreakerState | None = None
        for rec in history:
            s = breakers.evolve(s, rec.event)
        events = decide(kind, key, spec, s, seq, now)
        tx.append(stream, events, expected=len(history) or NO_STREAM)
        return events

    return work


def check_breaker(conn, key: tuple[str, str], accepted: list[EventBase]) -> None:
    events = [r.event for r in read_stream(conn, breaker_stream(*key))]
    assert events == accepted
    row = conn.execute(
        "SELECT state, failure_count, opened_at, last_failure_at, last_job_id, updated_at, opened_ns, last_failure_ns"
        " FROM circuit_breakers WHERE plugin=? AND command=?", key).fetchone()
    if not events:
        assert row is None
        return
    s: BreakerState | None = None
    for e in events:
        s = breakers.evolve(s, e)
    assert s is not None
    assert row == (s.state, s.failure_count, sql_ts(s.opened_at), sql_ts(s.last_failure_at), s.last_job_id,
                   sql_ts(s.updated_at), s.opened_at, s.last_failure_at)
    transitions = conn.execute(
        "SELECT from_state, to_state, failure_count, reason, job_id, created_ns FROM circuit_breaker_transitions"
        " WHERE plugin=? AND command=? ORDER BY id", key).fetchall()
    assert transitions == [(e.from_state, e.to_state, e.failure_count, e.reason, e.job_id, e.at)
                           for e in events if isinstance(e, BreakerTransitioned)]


async def scenario(plan: list[list[tuple[str, int, dict[str, Any]]]], fresh_store: FreshStore) -> None:
    accepted: dict[tuple[str, str], list[EventBase]] = {key: [] for key in KEYS}
    seq = 0
    async with fresh_log("normal", default_runner(), store=fresh_store) as log:
        for wave in plan:
            units = []
            for kind, n, spec in wave:
                seq += 1
                units.append((KEYS[n], unit(kind, KEYS[n], spec, seq, seq * NS)))
            await submit_wave(log, units, accepted)
        conn = log.reader()
        for key, events in accepted.items():
            check_breaker(conn, key, events)
        conn.close()
        stored = log.store
        await log.aclose()
        assert_rebuild_reproduces(stored, TABLES)


def test_breaker_projection_equals_the_fold_of_every_breaker_stream(fresh_store):
    @settings(max_examples=fresh_store.examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plan=waves)
    def run(plan) -> None:
        asyncio.run(scenario(plan, fresh_store))

    run()
