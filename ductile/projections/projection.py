"""A projection: a named, versioned read model with one handler per event type.

Handlers run inside the writer's transaction (``cur`` is the writer's cursor) and write only the
projection's own tables. Bumping ``version`` makes the next open drop and rebuild the tables
from position 0.

A projection may also offer a bulk fold (``@PROJECTION.bulk_fold``): the same events folded in
memory, each final row written once with ``executemany``, for the whole-log fold of ``fold.py``.
The handlers stay the one definition of what the tables hold:
``tests/property/test_fast_rebuild_agreement.py`` holds the two row for row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

from ductile.events.record import Recorded
from ductile.events.types import EventBase

Handler = Callable[[sqlite3.Cursor, Any, Recorded], None]

# How many rows of unbounded kind (one per job, say) a bulk fold holds before it writes its oldest:
# memory stays bounded on any log, and a job is rarely still changing that many jobs later.
BULK_ROWS_HELD = 10_000

# A bulk fold binds statuses and outcomes as exact ``str`` (``str(member)``), never as the
# ``StrEnum`` member: sqlite3 binds an exact str directly, but sends a str subclass through its
# adaptation protocol first (a failed ``__adapt__``/``__conform__`` lookup and a formatted error,
# per value), which was a fifth of a rebuild's instructions. The stored text is the same.


class BulkFold(Protocol):
    """One whole-log fold of one projection, fresh per fold, into freshly created (empty) tables.

    ``handlers`` takes the same event types as the projection's live handlers, with the same
    signature; a handler may keep rows in memory instead of writing them. ``flush`` is called after
    every chunk of events (``final=False``: write what is needed to keep memory bounded) and once at
    the end (``final=True``: write everything still held)."""

    handlers: dict[type[EventBase], Handler]

    def flush(self, cur: sqlite3.Cursor, *, final: bool) -> None: ...


class Projection:
    def __init__(self, name: str, version: int, schema: str, tables: tuple[str, ...], *,
                 reads_meta: bool = True) -> None:
        self.name = name
        self.version = version
        self.schema = schema
        self.tables = tables
        # False: its handlers (live and bulk) read only ``rec.position``, ``rec.version``,
        # ``rec.type`` and ``rec.event`` of a record, so a fold of such projections alone reads
        # only those columns (``record.from_slim_row``; ``event_id``, ``stream`` and
        # ``recorded_at`` are left blank). tests/unit/projections/test_slim_records.py holds
        # every registered projection to it.
        self.reads_meta = reads_meta
        self.handlers: dict[type[EventBase], list[Handler]] = {}
        self.bulk: Callable[[], BulkFold] | None = None

    def on(self, *event_types: type[EventBase]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for et in event_types:
                self.handlers.setdefault(et, []).append(fn)
            return fn

        return register

    def bulk_fold(self, factory: Callable[[], BulkFold]) -> Callable[[], BulkFold]:
        """Register ``factory`` (a class, say) as this projection's bulk fold."""
        self.bulk = factory
        return factory

    def create(self, cur: sqlite3.Cursor) -> None:
        for statement in self.schema.split(";"):
            if statement.strip():
                cur.execute(statement)

    def drop(self, cur: sqlite3.Cursor) -> None:
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, v{self.version})"
