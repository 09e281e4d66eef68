"""The running process's live state that the API's stream, metrics and health read.

Use cases are not here: they are ``ductile.app.facade.Ductile``. This is what only a running
gateway has (the live hub, the SSE feed, uptime, the stop flag) plus the read pool: reads go to
read-only aiosqlite connections so they never wait for the writer. The composition root
builds one and hands it to the API beside the facade.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import aiosqlite

from ductile.events.log import EventLog
from ductile.events.read_pool import ReadPool
from ductile.runtime.event_feed import EventFeed
from ductile.runtime.observations import LiveHub
from ductile.system.logs import Log

if TYPE_CHECKING:
    from ductile.runtime.cluster import Cluster

T = TypeVar("T")
log = Log("scheduler")
LATE_TICKS = 3
LATE_FLOOR_SECONDS = 30.0


def is_late(seconds_since_tick: float, tick_interval: float) -> bool:
    """operations.md §9: the scheduler is late past ``max(3 × tick_interval, 30s)``."""
    return seconds_since_tick > max(LATE_TICKS * tick_interval, LATE_FLOOR_SECONDS)


class Services:
    def __init__(self, events: EventLog, *, api_enabled: bool = True) -> None:
        self.events = events
        self.started = time.monotonic()
        self.posture = "gateway" if api_enabled else "closed"
        self.shutting_down = False
        self.live = LiveHub()
        self.feed = EventFeed(events, self.live)  # the SSE streams' one follower of the log
        self.sse_subscribers = 0
        self.stopping = asyncio.Event()
        self.reads = ReadPool(events.store)  # closed by close(), once the API has drained
        self.last_tick_ns: int | None = None  # the scheduler's last tick (operations.md §9 heartbeat)
        self.cluster: Cluster | None = None  # this node on a shared PostgreSQL store (None: SQLite, one node)
        self._late_logged = False

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        return await self.reads.read(fn)

    async def close(self) -> None:
        await self.reads.close()

    def uptime_seconds(self) -> int:
        return int(time.monotonic() - self.started)

    def scheduler_lateness(self, tick_interval: float, now_ns: int) -> int | None:
        """Seconds since the last tick when the scheduler is late, else None (operations.md §9:
        late past ``max(3 × tick_interval, 30s)``). Before the first tick the clock runs from
        the process start, so a scheduler that never starts is noticed too. Logs one WARN line
        when lateness starts and one INFO line when it clears."""
        since_s = (now_ns - self.last_tick_ns) / 1e9 if self.last_tick_ns is not None else time.monotonic() - self.started
        late = is_late(since_s, tick_interval)
        if late != self._late_logged:
            self._late_logged = late
            if late:
                log.warn("gateway degraded: scheduler is late", seconds_since_tick=int(since_s))
            else:
                log.info("scheduler is on time again")
        return int(since_s) if late else None
