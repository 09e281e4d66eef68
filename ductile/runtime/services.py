"""What the ingresses (API, CLI through the API, later scheduler and router) call to act.

Validates a request against the loaded catalog, turns it into a command and submits it to the
writer. Reads go to a pool of read-only aiosqlite connections so they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite

from ductile.app import job_units
from ductile.app.job_units import EnqueueOutcome
from ductile.commands.jobs import EnqueueJob
from ductile.config.model import Config
from ductile.events.log import EventLog
from ductile.events.read_pool import ReadPool
from ductile.events.timefmt import NS
from ductile.runtime.catalog import Catalog
from ductile.runtime.event_feed import EventFeed
from ductile.runtime.observations import LiveHub
from ductile.system.logs import Log

T = TypeVar("T")
log = Log("dispatch")


class PluginNotFound(LookupError):
    def __str__(self) -> str:
        return "plugin not found"


class CommandNotSupported(LookupError):
    def __str__(self) -> str:
        return "command not supported by plugin"


class Services:
    def __init__(self, config: Config, catalog: Catalog, events: EventLog) -> None:
        self.config = config
        self.catalog = catalog
        self.events = events
        self.started = time.monotonic()
        self.posture = "gateway" if config.api.enabled else "closed"
        self.shutting_down = False
        self.config_snapshot_id: str | None = None
        self.schedule_specs: list[Any] = []
        self.pipelines: dict[str, Any] = {}  # name -> ductile.pipelines.graph.Pipeline
        self.router: Any = None  # ductile.app.routing.Router
        self.live = LiveHub()
        self.feed = EventFeed(events, self.live)  # the SSE streams' one follower of the log
        self.sse_subscribers = 0
        self.stopping = asyncio.Event()
        self.reads = ReadPool(events.path)  # closed by close(), once the API has drained

    # --- reads -----------------------------------------------------------------------------

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        return await self.reads.read(fn)

    async def close(self) -> None:
        await self.reads.close()

    def uptime_seconds(self) -> int:
        return int(time.monotonic() - self.started)

    # --- commands ----------------------------------------------------------------------------

    def check_target(self, plugin: str, command: str) -> None:
        loaded = self.catalog.get(plugin)
        if loaded is None:
            raise PluginNotFound(plugin)
        if loaded.command(command) is None:
            raise CommandNotSupported(command)

    async def enqueue(
        self,
        plugin: str,
        command: str,
        payload: dict[str, Any],
        submitted_by: str,
        *,
        dedupe_key: str | None = None,
        dedupe_ttl: float | None = None,
        direct: bool = False,
        **lineage: Any,
    ) -> EnqueueOutcome:
        self.check_target(plugin, command)
        loaded = self.catalog.plugins[plugin]
        ttl = self.config.service.dedupe_ttl if dedupe_ttl is None else dedupe_ttl
        cmd = EnqueueJob(
            job_id=str(uuid.uuid4()), plugin=plugin, command=command, payload=payload, submitted_by=submitted_by,
            max_attempts=loaded.entry.retry.max_attempts, dedupe_key=dedupe_key or None, dedupe_ttl=int(ttl * NS),
            config_snapshot_id=self.config_snapshot_id, direct=direct, **lineage,
        )
        outcome = await self.events.submit(lambda tx: job_units.enqueue(tx, cmd))
        if outcome.deduped:
            log.info("job deduped", plugin=plugin, command=command, dedupe_key=dedupe_key,
                     existing_job_id=outcome.existing_job_id, dedupe_reason=outcome.dedupe_reason)
        else:
            log.debug("job enqueued", job_id=outcome.job_id, plugin=plugin, command=command, submitted_by=submitted_by)
        return outcome
