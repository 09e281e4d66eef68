"""Event contexts (pipeline baggage): one immutable record per routed job, chained to its parent.

Never pruned (jobs.md §10): ``ductile job inspect`` shows the chain and the merged baggage.
"""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar

import msgspec

from ductile.events.record import Recorded
from ductile.events.timefmt import sql_ts
from ductile.events.types import ContextCreated, EventBase
from ductile.projections.projection import BULK_ROWS_HELD, Handler, Projection

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_contexts (
  id TEXT PRIMARY KEY,
  parent_id TEXT,
  pipeline_name TEXT NOT NULL,
  step_id TEXT NOT NULL,
  claims TEXT NOT NULL,
  context TEXT NOT NULL,
  hops INTEGER NOT NULL,
  hook_depth INTEGER NOT NULL,
  created_at TEXT NOT NULL
)
"""

PROJECTION = Projection(name="contexts", version=1, schema=SCHEMA, tables=("event_contexts",), reads_meta=False)

_json = msgspec.json.Encoder()


_INSERT = ("INSERT INTO event_contexts(id, parent_id, pipeline_name, step_id, claims, context, hops, hook_depth,"
           " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _row(e: ContextCreated) -> tuple[Any, ...]:
    return (e.context_id, e.parent_id, e.pipeline, e.step_id, _json.encode(e.claims).decode(),
            _json.encode(e.context).decode(), e.hops, e.hook_depth, sql_ts(e.at))


@PROJECTION.on(ContextCreated)
def _created(cur: sqlite3.Cursor, e: ContextCreated, rec: Recorded) -> None:
    cur.execute(_INSERT, _row(e))


@PROJECTION.bulk_fold
class ContextsFold:
    """Contexts are only ever inserted: the rows, appended, written ``BULK_ROWS_HELD`` at a time."""

    held: ClassVar[int] = BULK_ROWS_HELD  # a test lowers it to make the rows go mid-log

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.handlers: dict[type[EventBase], Handler] = {ContextCreated: self._created}

    def flush(self, cur: sqlite3.Cursor, *, final: bool) -> None:
        if final or len(self.rows) > self.held:
            cur.executemany(_INSERT, self.rows)
            self.rows = []

    def _created(self, cur: sqlite3.Cursor, e: ContextCreated, rec: Recorded) -> None:
        self.rows.append(_row(e))


_decode_context = msgspec.json.Decoder(dict[str, Any])


class ContextRecord(msgspec.Struct, frozen=True):
    """An event context: the accumulated baggage (with the ``ductile`` namespace) and its lineage counters."""

    context: dict[str, Any]
    hops: int
    hook_depth: int


def find_context(cur: sqlite3.Cursor, context_id: str) -> ContextRecord | None:
    row = cur.execute("SELECT context, hops, hook_depth FROM event_contexts WHERE id=?", (context_id,)).fetchone()
    return None if row is None else ContextRecord(_decode_context.decode(row[0]), row[1], row[2])
