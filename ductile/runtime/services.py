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
from typing import TypeVar

import aiosqlite

from ductile.events.log import EventLog
from ductile.events.read_pool import ReadPool
from ductile.runtime.event_feed import EventFeed
from ductile.runtime.observations import LiveHub

T = TypeVar("T")


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
        self.reads = ReadPool(events.path)  # closed by close(), once the API has drained

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        return await self.reads.read(fn)

    async def close(self) -> None:
        await self.reads.close()

    def uptime_seconds(self) -> int:
        return int(time.monotonic() - self.started)
