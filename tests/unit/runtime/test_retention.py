"""Retention prunes old projection rows of every read model it names, never the log (jobs.md §10)."""

from __future__ import annotations

from pathlib import Path

from ductile.config.model import ServiceConfig
from ductile.events.log import EventLog
from ductile.events.types import BreakerTransitioned
from ductile.projections.registry import default_runner
from ductile.runtime.retention import prune_event

NS = 1_000_000_000
DAY = 86_400 * NS


def test_old_breaker_transitions_are_pruned_and_their_events_stay_in_the_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "state.db", "normal", default_runner()).open_sync()
    try:
        now = 1_800_000_000 * NS
        old = BreakerTransitioned(plugin="p", command="poll", from_state="closed", to_state="open", failure_count=3,
                                  reason="failure_threshold", opened_at=now - 100 * DAY, at=now - 100 * DAY)
        log.append_sync("breaker-p/poll", [old])
        conn = log.reader()
        event = prune_event(conn, ServiceConfig(), now)  # default retention: 2160h = 90 days
        assert event is not None and "circuit_breaker_transitions" in event.before
        log.append_sync("system", [event])
        assert conn.execute("SELECT COUNT(*) FROM circuit_breaker_transitions").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM events WHERE type='BreakerTransitioned'").fetchone()[0] == 1
        assert conn.execute("SELECT state FROM circuit_breakers").fetchone()[0] == "open", "state is never pruned"
        conn.close()
    finally:
        log.close()


def test_recent_breaker_transitions_are_kept(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "state.db", "normal", default_runner()).open_sync()
    try:
        now = 1_800_000_000 * NS
        log.append_sync("breaker-p/poll", [BreakerTransitioned(
            plugin="p", command="poll", from_state="closed", to_state="open", failure_count=3,
            reason="failure_threshold", opened_at=now - DAY, at=now - DAY)])
        conn = log.reader()
        assert prune_event(conn, ServiceConfig(), now) is None
        conn.close()
    finally:
        log.close()
