"""The breaker read model follows the decider: a re-probe of a half-open breaker is remembered
but is not a transition (jobs.md §9)."""

from __future__ import annotations

from pathlib import Path

from ductile.commands import breakers
from ductile.events.log import EventLog, WriteTx
from ductile.events.types import BreakerTransitioned, breaker_stream
from ductile.projections.registry import default_runner


def test_a_reprobe_updates_the_probe_job_without_a_half_open_to_half_open_transition(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "state.db", "normal", default_runner()).open_sync()
    try:
        def half_open_then_reprobe(tx: WriteTx) -> None:
            stream = breaker_stream("p", "poll")
            tx.append(stream, [BreakerTransitioned(plugin="p", command="poll", from_state="open", to_state="half_open",
                                                   failure_count=3, reason="cooldown_elapsed", job_id="probe-1",
                                                   opened_at=tx.now, at=tx.now)])
            half = breakers.BreakerState(state="half_open", failure_count=3, opened_at=tx.now, last_job_id="probe-1")
            tx.append(stream, breakers.on_reprobe(half, "p", "poll", "probe-2", tx.now))

        log.submit_sync(half_open_then_reprobe)
        reader = log.reader()
        try:
            state = reader.execute("SELECT state, failure_count, last_job_id FROM circuit_breakers").fetchall()
            moves = reader.execute("SELECT from_state, to_state FROM circuit_breaker_transitions ORDER BY id").fetchall()
        finally:
            reader.close()
    finally:
        log.close()
    assert state == [("half_open", 3, "probe-2")]
    assert moves == [("open", "half_open")]
