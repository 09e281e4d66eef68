"""Retention: prune old projection rows by appending ``ProjectionsPruned`` (never the log)."""

from __future__ import annotations

import asyncio
import sqlite3

from ductile.config.model import Config, ServiceConfig
from ductile.events.log import EventLog
from ductile.events.timefmt import NS
from ductile.events.types import ProjectionsPruned
from ductile.projections.pruning import tables_with_rows_before
from ductile.system.logs import Log


def cutoffs(service: ServiceConfig, now: int) -> dict[str, int]:
    keep = {
        "job_queue": service.job_queue_retention,
        "job_log": service.job_log_retention,
        "job_transitions": service.job_transitions_retention,
        "job_attempts": service.job_attempts_retention,
        "circuit_breaker_transitions": service.breaker_transitions_retention,
    }
    return {table: now - int(seconds * NS) for table, seconds in keep.items() if seconds > 0}


def prune_event(conn: sqlite3.Connection, service: ServiceConfig, now: int) -> ProjectionsPruned | None:
    """The prune to append now, or None when no projection row is old enough (no empty events)."""
    before = cutoffs(service, now)
    due = tables_with_rows_before(conn, before)
    if not due:
        return None
    return ProjectionsPruned(before=due, at=now)


class Retention:
    """Runs on every scheduler tick: appends a ``ProjectionsPruned`` when rows are old enough."""

    def __init__(self, events: EventLog, config: Config) -> None:
        self.events = events
        self.service = config.service
        self._reader: sqlite3.Connection | None = None

    def _due(self, now: int) -> ProjectionsPruned | None:
        if self._reader is None:
            self._reader = self.events.reader()
        try:
            return prune_event(self._reader, self.service, now)
        except Exception as exc:
            if self.events.store.spoils_connection(exc):  # a server connection that broke: the next pass opens anew
                self.close()
            raise

    async def run(self, now: int) -> None:
        event = await asyncio.to_thread(self._due, now)
        if event is not None:
            await self.events.append("system", [event])
            Log("eventlog").info("projections pruned", tables=sorted(event.before))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
