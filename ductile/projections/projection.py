"""A projection: a named, versioned read model with one handler per event type.

Handlers run inside the writer's transaction (``cur`` is the writer's cursor) and write only the
projection's own tables. Bumping ``version`` makes the next open drop and rebuild the tables
from position 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from ductile.events.record import Recorded
from ductile.events.types import EventBase

Handler = Callable[[sqlite3.Cursor, Any, Recorded], None]


class Projection:
    def __init__(self, name: str, version: int, schema: str, tables: tuple[str, ...]) -> None:
        self.name = name
        self.version = version
        self.schema = schema
        self.tables = tables
        self.handlers: dict[type[EventBase], list[Handler]] = {}

    def on(self, *event_types: type[EventBase]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for et in event_types:
                self.handlers.setdefault(et, []).append(fn)
            return fn

        return register

    def create(self, cur: sqlite3.Cursor) -> None:
        for statement in self.schema.split(";"):
            if statement.strip():
                cur.execute(statement)

    def drop(self, cur: sqlite3.Cursor) -> None:
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, v{self.version})"
