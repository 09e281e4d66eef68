"""Circuit breaker state per (plugin, command) and its transition history."""

from __future__ import annotations

import sqlite3

import msgspec

from ductile.events.record import Recorded
from ductile.events.timefmt import sql_ts
from ductile.events.types import (
    BreakerFailureCounted,
    BreakerProbeEnqueued,
    BreakerTransitioned,
    ProjectionsPruned,
)
from ductile.projections.projection import Projection
from ductile.vocabulary import CircuitState

SCHEMA = """
CREATE TABLE IF NOT EXISTS circuit_breakers (
  plugin TEXT NOT NULL,
  command TEXT NOT NULL,
  state TEXT NOT NULL,
  failure_count INTEGER NOT NULL,
  opened_at TEXT,
  last_failure_at TEXT,
  last_job_id TEXT,
  updated_at TEXT NOT NULL,
  opened_ns INTEGER,
  last_failure_ns INTEGER,
  PRIMARY KEY (plugin, command)
);
CREATE TABLE IF NOT EXISTS circuit_breaker_transitions (
  id INTEGER PRIMARY KEY,
  plugin TEXT NOT NULL,
  command TEXT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  failure_count INTEGER NOT NULL,
  reason TEXT NOT NULL,
  job_id TEXT,
  created_at TEXT NOT NULL,
  created_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS circuit_breaker_transitions_key ON circuit_breaker_transitions(plugin, command, id)
"""

PROJECTION = Projection(
    name="breakers", version=1, schema=SCHEMA, tables=("circuit_breakers", "circuit_breaker_transitions"),
    reads_meta=False,  # projection.py
)


@PROJECTION.on(BreakerTransitioned)
def _transitioned(cur: sqlite3.Cursor, e: BreakerTransitioned, rec: Recorded) -> None:
    opened = e.opened_at if e.to_state in (CircuitState.OPEN, CircuitState.HALF_OPEN) else None
    cur.execute(
        "INSERT INTO circuit_breakers(plugin, command, state, failure_count, opened_at, last_failure_at, last_job_id,"
        " updated_at, opened_ns, last_failure_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(plugin, command) DO UPDATE SET state=excluded.state, failure_count=excluded.failure_count,"
        " opened_at=excluded.opened_at, opened_ns=excluded.opened_ns,"
        " last_failure_at=COALESCE(excluded.last_failure_at, circuit_breakers.last_failure_at),"
        " last_failure_ns=COALESCE(excluded.last_failure_ns, circuit_breakers.last_failure_ns),"
        " last_job_id=COALESCE(excluded.last_job_id, circuit_breakers.last_job_id), updated_at=excluded.updated_at",
        (e.plugin, e.command, e.to_state, e.failure_count, sql_ts(opened), sql_ts(e.last_failure_at), e.job_id,
         sql_ts(e.at), opened, e.last_failure_at),
    )
    cur.execute(
        "INSERT INTO circuit_breaker_transitions(id, plugin, command, from_state, to_state, failure_count, reason,"
        " job_id, created_at, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.position, e.plugin, e.command, e.from_state, e.to_state, e.failure_count, e.reason, e.job_id,
         sql_ts(e.at), e.at),
    )


@PROJECTION.on(BreakerFailureCounted)
def _counted(cur: sqlite3.Cursor, e: BreakerFailureCounted, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO circuit_breakers(plugin, command, state, failure_count, last_failure_at, last_job_id,"
        " updated_at, last_failure_ns) VALUES (?, ?, 'closed', ?, ?, ?, ?, ?)"
        " ON CONFLICT(plugin, command) DO UPDATE SET failure_count=excluded.failure_count,"
        " last_failure_at=COALESCE(excluded.last_failure_at, circuit_breakers.last_failure_at),"
        " last_failure_ns=COALESCE(excluded.last_failure_ns, circuit_breakers.last_failure_ns),"
        " last_job_id=COALESCE(excluded.last_job_id, circuit_breakers.last_job_id), updated_at=excluded.updated_at",
        (e.plugin, e.command, e.failure_count, sql_ts(e.last_failure_at), e.job_id, sql_ts(e.at), e.last_failure_at),
    )


@PROJECTION.on(BreakerProbeEnqueued)
def _probe(cur: sqlite3.Cursor, e: BreakerProbeEnqueued, rec: Recorded) -> None:
    # Remembers the probe (the scheduler skips while it is outstanding); no transition row.
    cur.execute(
        "UPDATE circuit_breakers SET last_job_id=?, updated_at=? WHERE plugin=? AND command=?",
        (e.job_id, sql_ts(e.at), e.plugin, e.command),
    )


@PROJECTION.on(ProjectionsPruned)
def _pruned(cur: sqlite3.Cursor, e: ProjectionsPruned, rec: Recorded) -> None:
    before = e.before.get("circuit_breaker_transitions")
    if before:
        cur.execute("DELETE FROM circuit_breaker_transitions WHERE created_ns < ?", (before,))



class BreakerRecord(msgspec.Struct, frozen=True):
    """One ``circuit_breakers`` row (times in Unix ns)."""

    state: CircuitState
    failure_count: int
    opened_ns: int | None
    last_failure_ns: int | None
    last_job_id: str | None


def find_breaker(cur: sqlite3.Cursor, plugin: str, command: str) -> BreakerRecord | None:
    row = cur.execute(
        "SELECT state, failure_count, opened_ns, last_failure_ns, last_job_id FROM circuit_breakers"
        " WHERE plugin=? AND command=?",
        (plugin, command),
    ).fetchone()
    return None if row is None else BreakerRecord(CircuitState(row[0]), *row[1:])
