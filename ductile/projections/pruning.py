"""Which projection tables hold rows older than their retention cut-off: the probe that keeps
retention from appending an empty ``ProjectionsPruned``. Each table's own projection applies the
prune itself (``queue``, ``ledger``, ``breakers``)."""

from __future__ import annotations

import sqlite3

_PROBES = {
    "job_queue": "SELECT 1 FROM job_queue WHERE completed_ns IS NOT NULL AND completed_ns < ? LIMIT 1",
    "job_log": "SELECT 1 FROM job_log WHERE completed_ns < ? LIMIT 1",
    "job_transitions": "SELECT 1 FROM job_transitions WHERE created_ns < ? LIMIT 1",
    "job_attempts": "SELECT 1 FROM job_attempts WHERE created_ns < ? LIMIT 1",
    "circuit_breaker_transitions": "SELECT 1 FROM circuit_breaker_transitions WHERE created_ns < ? LIMIT 1",
}


def tables_with_rows_before(conn: sqlite3.Connection, cutoffs: dict[str, int]) -> dict[str, int]:
    """The subset of ``{table: cut-off}`` whose table has at least one row older than its cut-off."""
    return {t: c for t, c in cutoffs.items() if t in _PROBES and conn.execute(_PROBES[t], (c,)).fetchone()}
