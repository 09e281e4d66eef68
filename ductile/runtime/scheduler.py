"""The scheduler loop: reconcile entries, catch up once at boot, then evaluate on every tick.

It only enqueues (through the writer); it never runs plugins. Besides each ``tick_interval`` it
wakes at the earliest ``next_run_at`` of any active entry, so an entry fires within a second of
being due whatever the tick. Time comes from an injectable ``Clock``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from ductile.app import schedules
from ductile.app.schedules import EntrySettings
from ductile.commands.schedule_plan import Spec, host_timezone, parse_entry
from ductile.config.model import Config
from ductile.events.log import EventLog
from ductile.events.record import Recorded
from ductile.events.timefmt import NS, rfc3339
from ductile.events.types import (
    BreakerTransitioned,
    JobDeduped,
    JobEnqueued,
    ScheduleFired,
    ScheduleSkipped,
    ScheduleStatusChanged,
)
from ductile.projections.schedules import planned_runs
from ductile.runtime.catalog import Catalog
from ductile.system.logs import Log
from ductile.vocabulary import ScheduleStatus

log = Log("scheduler")


class Clock(Protocol):
    def now(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def load_specs(config: Config, catalog: Catalog, default_tz: str | None = None) -> tuple[list[Spec], list[str]]:
    """Every entry of every enabled plugin, plugin names sorted, entries in config order."""
    specs: list[Spec] = []
    warnings: list[str] = []
    tz = default_tz
    if tz is None:
        tz, found = host_timezone()
        if not found and any(p.entry.schedules for p in catalog.plugins.values()):
            warnings.append("no IANA time zone could be determined for this host; schedules default to UTC")
    for name in sorted(catalog.plugins):
        plugin = catalog.plugins[name]
        commands = {c.name for c in plugin.manifest.commands}
        seen: set[str] = set()
        for i, raw in enumerate(plugin.entry.schedules):
            spec, notes = parse_entry(name, i, raw, commands, tz, plugin.entry.max_outstanding_polls)
            warnings += notes
            if spec.id in seen:
                warnings.append(f'plugin "{name}": schedules[{i}].id "{spec.id}" duplicates an earlier entry')
                continue
            seen.add(spec.id)
            specs.append(spec)
    return specs, warnings


class Scheduler:
    def __init__(
        self,
        events: EventLog,
        config: Config,
        catalog: Catalog,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_tick: Callable[[int], Awaitable[None]] | None = None,
        specs: list[Spec] | None = None,
    ) -> None:
        self.events = events
        self.config = config
        self.catalog = catalog
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.tick_ns = int(config.service.tick_interval * NS)
        if specs is None:
            specs, warnings = load_specs(config, catalog)
            for w in warnings:
                log.warn(w)
        self.specs = specs
        self._wake = asyncio.Event()
        self._on_tick = on_tick
        self._stopping = False
        self._reader: sqlite3.Connection | None = None
        # A tick and a re-plan never interleave: a tick evaluates every due entry against the
        # entries it started with, and a re-plan's reconcile lands between two ticks.
        self._plan_lock = asyncio.Lock()
        self._started = False  # before start(), a re-plan only swaps the entries: start() reconciles them

    def settings(self, plugin: str) -> EntrySettings:
        entry = self.catalog.plugins[plugin].entry
        return EntrySettings(
            service_name=self.config.service.name, max_attempts=entry.retry.max_attempts,
            reset_after=int(entry.circuit_breaker.reset_after * NS), dedupe_ttl=int(self.config.service.dedupe_ttl * NS),
        )

    async def start(self) -> None:
        """Reconcile every entry with its stored state, then run startup catch-up (once)."""
        async with self._plan_lock:
            await self._start()
            self._started = True

    async def _start(self) -> None:
        for spec in self.specs:
            recs = await self.events.submit(lambda tx, s=spec: schedules.reconcile(tx, s, self.rng.random()))
            self._report(spec, recs)
        for spec in self.specs:
            if not spec.valid:
                continue
            intent, recs = await self.events.submit(
                lambda tx, s=spec: schedules.catch_up(tx, s, self.settings(s.plugin), self.rng.random(), self.tick_ns)
            )
            for w in intent.warnings:
                log.warn(w, plugin=spec.plugin, schedule_id=spec.id)
            self._report(spec, recs)

    async def replan(self, config: Config, catalog: Catalog, specs: list[Spec]) -> None:
        """Run from ``specs`` from now on (a reload, config.md §8). Schedule state lives in the log,
        so nothing is lost or doubled: an unchanged entry keeps its stored next fire; a changed one
        is re-planned from its last fire (``reconcile``); a new one is planned from now, without a
        catch-up (that is boot's alone); a removed one is no longer evaluated and keeps its stored
        state, so putting it back resumes its plan."""
        async with self._plan_lock:
            self.config, self.catalog, self.specs = config, catalog, specs
            self.tick_ns = int(config.service.tick_interval * NS)
            if self._started:
                for spec in specs:
                    recs = await self.events.submit(lambda tx, s=spec: schedules.reconcile(tx, s, self.rng.random()))
                    self._report(spec, recs)
        self._wake.set()

    async def tick(self) -> None:
        async with self._plan_lock:
            await self._tick()

    async def _tick(self) -> None:
        now = self.clock.now()
        plans = await asyncio.to_thread(self._plans)
        # Only due entries reach the writer; the unit re-checks inside its transaction.
        due = [s for s in self.specs if s.valid and (p := plans.get((s.plugin, s.id))) is not None and p <= now]
        results = await asyncio.gather(*(
            self.events.submit(lambda tx, s=s: schedules.evaluate(tx, s, self.settings(s.plugin), self.rng.random()))
            for s in due
        ), return_exceptions=True)
        for spec, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                log.error("schedule evaluation failed", exc=result, plugin=spec.plugin, schedule_id=spec.id,
                          error=repr(result))
            else:
                self._report(spec, result[1])
        if self._on_tick is not None:
            await self._on_tick(now)

    async def run(self) -> None:
        await self.start()
        while not self._stopping:
            await self.tick()
            delay = await self._until_next()
            self._wake.clear()
            # The clock does the waiting too, so a fake clock drives the whole loop in tests.
            sleeper = asyncio.ensure_future(self.clock.sleep(delay))
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            for pending in (sleeper, waker):
                pending.cancel()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _until_next(self) -> float:
        """Seconds to the next tick or the earliest due entry, whichever is sooner (at least 10 ms)."""
        plans = await asyncio.to_thread(self._plans)
        now = self.clock.now()
        delay = self.tick_ns / NS
        # A plan still in the past after a tick belongs to an entry that is due but blocked
        # (window, breaker, overlap): look again in a second rather than spin.
        upcoming = [p if p > now else now + NS for p in plans.values()]
        if upcoming:
            delay = min(delay, (min(upcoming) - now) / NS)
        return max(delay, 0.01)

    def _plans(self) -> dict[tuple[str, str], int]:
        """``next_run_at`` of every active configured entry, from the read model."""
        if self._reader is None:
            self._reader = self.events.reader()
        keys = {(s.plugin, s.id) for s in self.specs if s.valid}
        try:
            planned = planned_runs(self._reader)
        except Exception as exc:
            if self.events.store.spoils_connection(exc):  # a server connection that broke: the next pass opens anew
                self.close()
            raise
        return {key: nxt for key, nxt in planned.items() if key in keys}

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _report(self, spec: Spec, recs: list[Recorded]) -> None:
        for rec in recs:
            e = rec.event
            if isinstance(e, JobEnqueued):
                log.info("Enqueued scheduled job", plugin=e.plugin, command=e.command, schedule_id=e.schedule_id,
                         job_id=e.job_id, dedupe_key=e.dedupe_key)
            elif isinstance(e, JobDeduped):  # a catch-up run already done or outstanding: never silent (jobs.md §4)
                log.info("job deduped", plugin=e.plugin, command=e.command, schedule_id=spec.id, dedupe_key=e.dedupe_key,
                         existing_job_id=e.existing_job_id, dedupe_reason=e.dedupe_reason)
            elif isinstance(e, ScheduleFired) and e.exhausted:
                log.info("schedule entry exhausted", plugin=e.plugin, schedule_id=e.schedule_id)
            elif isinstance(e, ScheduleSkipped):
                log.info("scheduled occurrence skipped", plugin=e.plugin, schedule_id=e.schedule_id, reason=e.reason,
                         slot=rfc3339(e.slot), catch_up=e.catch_up or None, missed=e.missed)
            elif isinstance(e, BreakerTransitioned):
                log.warn("circuit breaker state changed", plugin=e.plugin, command=e.command, from_state=e.from_state,
                         to_state=e.to_state, failure_count=e.failure_count, reason=e.reason, job_id=e.job_id)
            elif isinstance(e, ScheduleStatusChanged) and e.status == ScheduleStatus.PAUSED_INVALID:
                log.error("schedule entry invalid", plugin=e.plugin, schedule_id=e.schedule_id, reason=e.reason,
                          detail=e.detail)
