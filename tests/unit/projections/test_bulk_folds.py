"""The bulk folds (``Projection.bulk``) of a rebuild against the live handlers on the frozen
release-1 log: what a user upgrading from release 1 gets from ``system rebuild`` is what the
handlers would have written. Random logs: ``tests/property/test_fast_rebuild_agreement.py``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ductile.events.sqlite_store import connect
from ductile.projections.registry import ALL, default_runner
from tests.property.state_db import folded_tables

RELEASE_1 = Path(__file__).resolve().parents[2] / "fixtures" / "releases" / "r1-5c55a71" / "state.db"
BULK = tuple(p for p in ALL if p.bulk is not None)


def test_the_release_1_log_folds_to_the_same_rows_with_the_bulk_folds_as_with_the_handlers(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copy(RELEASE_1, db)
    bulk = folded_tables(db, BULK, bulk=True)
    assert bulk == folded_tables(db, BULK, bulk=False)
    assert {p.name for p in BULK} >= {"queue", "ledger"}
    assert bulk["job_queue"] and bulk["job_log"] and bulk["job_attempts"] and bulk["job_transitions"]


def test_a_rebuild_reports_each_projections_own_events_and_time(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copy(RELEASE_1, db)
    conn = connect(db, "normal")
    try:
        begun = time.perf_counter()
        reports = default_runner().rebuild(conn)
        wall = time.perf_counter() - begun
    finally:
        conn.close()
    by_name = {r.name: r for r in reports}
    assert by_name["queue"].events_applied > 0 and by_name["ledger"].events_applied > 0
    # Measured per projection (bulk fold or handlers, writes and index builds), not a share of the
    # total: each one that took events spent time, and together they fit inside the whole rebuild.
    assert all(r.seconds > 0 for r in reports if r.events_applied)
    assert sum(r.seconds for r in reports) <= wall
    assert by_name["webhooks"].events_applied == 0
