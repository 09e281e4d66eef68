"""Replaying the log into fresh projections equals the stored ones, and a hand edit is named
(operations.md §5 ``projection_replay``, ``db_schema``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ductile.config.model import ServiceConfig
from ductile.events.log import EventLog
from ductile.events.schema import EVENTS_DDL
from ductile.events.types import JobStarted, JobSucceeded, ProjectionsPruned, job_stream
from ductile.projections.registry import ALL, default_runner
from ductile.projections.replay import replay_and_compare, schema_differences
from ductile.runtime.retention import prune_event
from tests.unit.events.samples import NS, enqueued, job_id, note

DAY = 86_400 * NS


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state DB with finished jobs (some pruned by a logged ProjectionsPruned) and plugin state."""
    path = tmp_path / "state.db"
    log = EventLog(path, "normal", default_runner()).open_sync()
    try:
        now = 1_800_000_000 * NS
        for n in range(1, 6):
            at = now - (5 - n) * DAY - 3600 * NS
            jid = job_id(n)
            log.append_sync(job_stream(jid), [enqueued(jid, at=at), JobStarted(job_id=jid, attempt=1, at=at + 1),
                                              JobSucceeded(job_id=jid, attempt=1, result='{}', at=at + 2)])
        log.append_sync("plugin-p", [note(1), note(2)])
        conn = log.reader()
        event = prune_event(conn, ServiceConfig(), now)
        conn.close()
        assert isinstance(event, ProjectionsPruned)
        log.append_sync("system", [event])
    finally:
        log.close()
    yield path


def _edit(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(sql)
    conn.close()


def test_a_replay_of_an_untouched_log_equals_the_stored_projections(state: Path) -> None:
    seen: list[tuple[int, int]] = []
    report = replay_and_compare(state, ALL, lambda done, total: seen.append((done, total)))
    assert report.ok, report.detail
    assert report.events == 18 and seen[-1] == (18, 18)


def test_pruned_rows_stay_pruned_in_the_replay(state: Path) -> None:
    conn = sqlite3.connect(state)
    kept = conn.execute("SELECT COUNT(*) FROM job_queue").fetchone()[0]
    conn.close()
    assert 0 < kept < 5  # retention pruned some, and the replay still agrees
    assert replay_and_compare(state, ALL).ok


def test_a_hand_edited_row_is_named_by_projection_table_key_and_column(state: Path) -> None:
    jid = job_id(5)
    _edit(state, f"UPDATE job_queue SET status='failed' WHERE job_id='{jid}'")
    report = replay_and_compare(state, ALL)
    assert not report.ok
    assert report.detail == f"queue: table job_queue, row (job_id='{jid}'): column status differs from the replay"


def test_a_deleted_row_and_an_inserted_row_are_named(state: Path) -> None:
    _edit(state, "DELETE FROM plugin_state")
    assert replay_and_compare(state, ALL).detail == (
        "plugin_state: table plugin_state, row (plugin='p'): missing from the stored projection")


def test_a_checkpoint_behind_the_head_fails_before_replaying(state: Path) -> None:
    _edit(state, "UPDATE projections SET position = 3 WHERE name = 'ledger'")
    report = replay_and_compare(state, ALL)
    assert not report.ok and report.detail == "checkpoints not at head 18: ledger at 3"


def test_the_stored_schema_matches_the_baseline_and_a_dropped_index_is_listed(state: Path) -> None:
    assert schema_differences(state, EVENTS_DDL, ALL) == []
    _edit(state, "DROP INDEX job_queue_completed")
    assert schema_differences(state, EVENTS_DDL, ALL) == ["missing index job_queue_completed"]


def test_a_projection_at_an_older_version_is_reported_not_compared(state: Path) -> None:
    _edit(state, "UPDATE projections SET version = 0 WHERE name = 'queue'")
    _edit(state, "DELETE FROM job_queue")
    report = replay_and_compare(state, ALL)
    assert report.ok, report.detail
    assert report.detail.endswith(f"queue: stored version 0, rebuilt at the next start ({ALL[0].version})")
