"""The running process's live state that the API's stream, metrics and health read.

Use cases are not here: they are ``ductile.app.facade.Ductile``. This is what only a running
gateway has (the live hub, the SSE feed, uptime, the stop flag) plus the read executor: reads go
to per-thread read-only connections so they never wait for the writer. The composition root
builds one and hands it to the API beside the facade.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ductile.events.log import EventLog
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
        self._local = threading.local()

    # --- reads -----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.events.reader()
            self._local.conn = conn
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(lambda: fn(self._conn()))

    def uptime_seconds(self) -> int:
        return int(time.monotonic() - self.started)
