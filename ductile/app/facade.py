"""The one typed facade that the API, the CLI and the runtime call (ARCHITECTURE §2).

``Ductile`` groups the use cases by concern (``ductile.jobs.enqueue``, ``ductile.pipelines.trigger``,
``ductile.schedules.reset_breaker`` ...). Every write goes through the writer (``events.submit``);
every read goes through ``Reads.read`` on a read-only connection, one call site per query, so the
read path can change without touching a caller.

Runtime things (the live hub, the SSE feed, metrics) are not here: app/ may not import runtime/,
so the composition root hands those to the API separately.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiosqlite
import msgspec

from ductile.app import jobs as app_jobs
from ductile.app import schedules as app_schedules
from ductile.app import webhooks as app_webhooks
from ductile.app.jobs import EnqueueOutcome
from ductile.app.reload import Reload, ReloadOutcome
from ductile.app.routing import Router
from ductile.app.vault import VaultKeeper, WriteOutcome
from ductile.commands.jobs import EnqueueJob
from ductile.commands.vault import Command as VaultCommand
from ductile.config.model import Config, WebhookEndpoint
from ductile.config.secret_refs import current_value
from ductile.events.log import EventLog
from ductile.events.timefmt import NS, rfc3339
from ductile.events.types import VAULT_AUDIT_STREAM, VaultAuthFailed
from ductile.pipelines.graph import Pipeline
from ductile.projections import analytics_queries, job_queries, schedule_queries
from ductile.projections import audit as audit_projection
from ductile.projections import vault as vault_projection
from ductile.projections.analytics_queries import QueueReport, Stopwatch, Summary, TreeNode
from ductile.projections.audit import AuditPage, AuditQuery
from ductile.projections.job_queries import Job, JobLogPage, JobPage
from ductile.projections.schedule_queries import ScheduleList
from ductile.system.logs import Log
from ductile.system.selfcheck import SelfcheckCheck, online_checks
from ductile.vocabulary import TERMINAL

if TYPE_CHECKING:
    from ductile.commands.schedule_plan import Spec
    from ductile.runtime.catalog import Catalog, LoadedPlugin

T = TypeVar("T")
log = Log("dispatch")


class Reads(Protocol):
    """Runs one read on a read-only connection of the state DB, off the event loop."""

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T: ...


class PluginNotFound(LookupError):
    def __str__(self) -> str:
        return "plugin not found"


class CommandNotSupported(LookupError):
    def __str__(self) -> str:
        return "command not supported by plugin"


class PipelineNotFound(LookupError):
    def __str__(self) -> str:
        return "pipeline not found"


class Jobs:
    def __init__(self, gw: Ductile) -> None:
        self._gw = gw

    async def enqueue(
        self, plugin: str, command: str, payload: dict[str, Any], submitted_by: str, *,
        dedupe_key: str | None = None, dedupe_ttl: float | None = None, direct: bool = False, **lineage: Any,
    ) -> EnqueueOutcome:
        cmd = self.command(plugin, command, payload, submitted_by, dedupe_key=dedupe_key, dedupe_ttl=dedupe_ttl,
                           direct=direct, **lineage)
        outcome = await self._gw.events.submit(lambda tx: app_jobs.enqueue(tx, cmd))
        if outcome.deduped:
            log.info("job deduped", plugin=plugin, command=command, dedupe_key=dedupe_key,
                     existing_job_id=outcome.existing_job_id, dedupe_reason=outcome.dedupe_reason)
        else:
            log.debug("job enqueued", job_id=outcome.job_id, plugin=plugin, command=command, submitted_by=submitted_by)
        return outcome

    def command(
        self, plugin: str, command: str, payload: dict[str, Any], submitted_by: str, *,
        dedupe_key: str | None = None, dedupe_ttl: float | None = None, direct: bool = False, **lineage: Any,
    ) -> EnqueueJob:
        """The ``EnqueueJob`` for a new root job: a new id, the plugin's ``max_attempts``, the
        dedupe TTL. Refused when the plugin or its command is unknown."""
        gw = self._gw
        loaded = gw.plugins.target(plugin, command)
        ttl = gw.config.service.dedupe_ttl if dedupe_ttl is None else dedupe_ttl
        return EnqueueJob(
            job_id=str(uuid.uuid4()), plugin=plugin, command=command, payload=payload, submitted_by=submitted_by,
            max_attempts=loaded.entry.retry.max_attempts, dedupe_key=dedupe_key or None, dedupe_ttl=int(ttl * NS),
            config_snapshot_id=gw.config_snapshot_id, direct=direct, **lineage,
        )

    # The readers answer plain dicts (the CLI prints them as they are); here each becomes its
    # record type once, so the API's answers have declared shapes.
    async def get(self, job_id: str, *, with_result: bool) -> Job | None:
        job = await self._gw.reads.read(lambda c: job_queries.get_job(c, job_id, with_result=with_result))
        return None if job is None else msgspec.convert(job, Job)

    async def list(self, *, plugin: str | None, command: str | None, status: str | None, submitted_by: str | None,
                   limit: int | None) -> JobPage:
        page = await self._gw.reads.read(
            lambda c: job_queries.list_jobs(c, plugin=plugin, command=command, status=status,
                                            submitted_by=submitted_by, limit=limit)
        )
        return msgspec.convert(page, JobPage)

    async def logs(self, *, job_id: str | None, plugin: str | None, command: str | None, status: str | None,
                   submitted_by: str | None, from_: str | None, to: str | None, query: str | None,
                   limit: int | None, include_result: bool, with_result: bool) -> JobLogPage:
        page = await self._gw.reads.read(
            lambda c: job_queries.job_logs(
                c, job_id=job_id, plugin=plugin, command=command, status=status, submitted_by=submitted_by,
                from_=from_, to=to, query=query, limit=limit, include_result=include_result, with_result=with_result,
            )
        )
        return msgspec.convert(page, JobLogPage)

    async def tree(self, job_id: str, *, with_result: bool) -> list[TreeNode] | None:
        tree = await self._gw.reads.read(lambda c: analytics_queries.job_tree(c, job_id, with_result=with_result))
        return None if tree is None else msgspec.convert(tree, list[TreeNode])

    async def wait_for_tree(self, root: str, deadline: float) -> list[TreeNode] | None:
        """The tree of ``root`` once every node is terminal, or None at ``deadline`` (monotonic)."""
        while True:
            tree = await self.tree(root, with_result=True)
            if tree and all(node.status in TERMINAL for node in tree):
                return tree
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(0.05, remaining))


class Plugins:
    def __init__(self, gw: Ductile) -> None:
        self._gw = gw

    def get(self, name: str) -> LoadedPlugin | None:
        return self._gw.catalog.get(name)

    def target(self, plugin: str, command: str) -> LoadedPlugin:
        """The loaded plugin that runs ``plugin``/``command``; refused when either is unknown."""
        loaded = self._gw.catalog.get(plugin)
        if loaded is None:
            raise PluginNotFound(plugin)
        if loaded.command(command) is None:
            raise CommandNotSupported(command)
        return loaded


class Pipelines:
    def __init__(self, gw: Ductile) -> None:
        self._gw = gw

    def get(self, name: str) -> Pipeline | None:
        return self._gw.pipelines_by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._gw.pipelines_by_name)

    async def trigger(self, name: str, payload: dict[str, Any]) -> list[str]:
        """Dispatch the entry steps of pipeline ``name`` atomically; the job ids, entry order."""
        router = self._gw.router
        if router is None or name not in self._gw.pipelines_by_name:
            raise PipelineNotFound(name)
        return await self._gw.events.submit(lambda tx: router.trigger(tx, name, payload))


class Schedules:
    def __init__(self, gw: Ductile) -> None:
        self._gw = gw

    async def list(self) -> ScheduleList:
        specs = self._gw.schedule_specs
        return msgspec.convert(await self._gw.reads.read(lambda c: schedule_queries.scheduler_jobs(c, specs)),
                               ScheduleList)

    async def reset_breaker(self, plugin: str, command: str) -> None:
        if self._gw.catalog.get(plugin) is None:
            raise PluginNotFound(plugin)
        await self._gw.events.submit(lambda tx: app_schedules.reset_breaker(tx, plugin, command))


class Analytics:
    def __init__(self, gw: Ductile) -> None:
        self._gw = gw

    async def summary(self, now: int) -> Summary:
        return msgspec.convert(await self._gw.reads.read(lambda c: analytics_queries.summary(c, now)), Summary)

    async def queue(self, now: int) -> QueueReport:
        workers = self._gw.config.service.max_workers
        report = await self._gw.reads.read(lambda c: analytics_queries.queue_analytics(c, now, workers))
        return msgspec.convert(report, QueueReport)

    async def stopwatch(self, plugin: str, window: str, now: int, *, subs: bool | None) -> Stopwatch:
        if self._gw.catalog.get(plugin) is None:
            raise PluginNotFound(plugin)
        report = await self._gw.reads.read(lambda c: analytics_queries.stopwatch(c, plugin, window, now, subs=subs))
        return msgspec.convert(report, Stopwatch)


class Webhooks:
    """Webhook deliveries (webhooks.md): the HMAC key read fresh, and the verified body enqueued."""

    def __init__(self, gw: Ductile) -> None:
        self._gw = gw

    def secret(self, name: str) -> str | None:
        """The current value of the endpoint's secret: read at every request, so a ``vault roll``
        takes effect the moment it is committed and a revoke (None) makes every request fail."""
        keeper = self._gw.vault.keeper
        return current_value(keeper.document() if keeper is not None else None, name)

    async def accept(self, endpoint: WebhookEndpoint, body: dict[str, Any],
                     guard: app_webhooks.ReplayGuard | None) -> app_webhooks.WebhookOutcome:
        """One ``handle`` job for ``body`` (§4), committed before this returns; or, for a replay of
        an accepted delivery, the first delivery's job."""
        event = app_webhooks.envelope(body, endpoint.path, endpoint.event_type, str(uuid.uuid4()),
                                      rfc3339(time.time_ns()) or "")
        by = app_webhooks.submitted_by(endpoint.path)
        cmd = self.jobs_command(endpoint.plugin, event, by)
        outcome = await self._gw.events.submit(lambda tx: app_webhooks.accept(tx, cmd, guard))
        if not outcome.replayed:
            log.debug("job enqueued", job_id=outcome.job_id, plugin=endpoint.plugin, command=app_webhooks.COMMAND,
                      submitted_by=by)
        return outcome

    def jobs_command(self, plugin: str, event: dict[str, Any], by: str) -> EnqueueJob:
        dedupe_key = event.get("dedupe_key")
        return self._gw.jobs.command(plugin, app_webhooks.COMMAND, event, by,
                                     dedupe_key=dedupe_key if isinstance(dedupe_key, str) else None)


class VaultUnavailable(LookupError):
    def __str__(self) -> str:
        return "vault not available"


class Vault:
    """The vault's use cases for the API (``/vault/*``) and the runtime. Writes run the keeper's
    one serialised write path off the event loop; reads go through the projections."""

    # vault.md §12: at most one ``auth_failed`` record per remote address per minute.
    AUTH_FAILED_EVERY_NS = 60 * NS

    def __init__(self, gw: Ductile, keeper: VaultKeeper | None) -> None:
        self._gw = gw
        self.keeper = keeper
        self._auth_failed_at: dict[str, int] = {}

    @property
    def loaded(self) -> bool:
        return self.keeper is not None

    def _keeper(self) -> VaultKeeper:
        if self.keeper is None:
            raise VaultUnavailable()
        return self.keeper

    async def apply(self, cmd: VaultCommand) -> WriteOutcome:
        """Any ``commands.vault`` command, committed (event, then blob) before it returns."""
        keeper = self._keeper()
        return await asyncio.to_thread(keeper.apply, cmd)

    async def state(self) -> vault_projection.VaultState:
        return await self._gw.reads.read(vault_projection.fetch_state)

    async def audit(self, query: AuditQuery) -> AuditPage:
        return await self._gw.reads.read(lambda c: audit_projection.fetch_query(c, query))

    async def auth_failed(self, path: str, remote: str) -> bool:
        """Audit a refused ``/vault/*`` request unless ``remote`` had one recorded in the last
        minute; whether a record was appended."""
        now = time.time_ns()
        last = self._auth_failed_at.get(remote)
        if last is not None and now - last < self.AUTH_FAILED_EVERY_NS:
            return False
        # Forget addresses quiet for a minute, so a scan from many addresses cannot grow this map.
        self._auth_failed_at = {r: t for r, t in self._auth_failed_at.items() if now - t < self.AUTH_FAILED_EVERY_NS}
        self._auth_failed_at[remote] = now
        await self._gw.events.submit(lambda tx: tx.append(VAULT_AUDIT_STREAM, [
            VaultAuthFailed(path=path, remote=remote, at=tx.now)]))
        return True


class System:
    def __init__(self, gw: Ductile) -> None:
        self._gw = gw
        self._selfcheck_running = False

    async def load(self) -> tuple[int, int]:
        """``(queue depth, plugins with an open breaker)`` for ``/healthz``."""
        return await self._gw.reads.read(_depth_and_open_breakers)

    def degraded_reasons(self) -> list[str]:
        """Why the gateway serves but is not well (operations.md §9); empty when it is."""
        reasons = []
        if (unwritable := self._gw.events.unwritable) is not None:
            reasons.append(f"event log not writable: {unwritable}")
        return reasons

    async def reload(self) -> ReloadOutcome:
        """config.md §8: the one reload path (serialized); ``ok`` or ``rejected`` with the reason."""
        if self._gw.reload is None:
            raise ReloadUnavailable()
        return await self._gw.reload()

    async def selfcheck(self) -> list[SelfcheckCheck] | None:
        """The online checks, or None while another run is in flight (one at a time)."""
        if self._selfcheck_running:
            return None
        self._selfcheck_running = True
        try:
            gw = self._gw
            store = gw.events.store
            state = store.file if store.file is not None else store  # the SQLite file, or the server store
            return await asyncio.to_thread(online_checks, gw.events.reader, state, gw.config, os.environ,
                                           Path.home())
        finally:
            self._selfcheck_running = False


async def _depth_and_open_breakers(conn: aiosqlite.Connection) -> tuple[int, int]:
    return await job_queries.queue_depth(conn), await schedule_queries.open_breaker_plugins(conn)


class ReloadUnavailable(LookupError):
    """A facade built without a gateway to reload (a standalone API app in tests)."""

    def __str__(self) -> str:
        return "config reload is not available here"


class Ductile:
    """The gateway as its callers see it. Built once by the composition root, fully wired."""

    def __init__(
        self, config: Config, catalog: Catalog, events: EventLog, reads: Reads, *,
        router: Router | None = None, pipelines: Mapping[str, Pipeline] | None = None,
        schedule_specs: list[Spec] | None = None, config_snapshot_id: str | None = None,
        vault: VaultKeeper | None = None, reload: Reload | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.events = events
        self.reads = reads
        self.router = router
        self.pipelines_by_name: Mapping[str, Pipeline] = pipelines or {}
        self.schedule_specs: list[Spec] = schedule_specs or []
        self.config_snapshot_id = config_snapshot_id
        self.reload = reload  # the gateway's one reload path; every generation of the facade shares it
        self.jobs = Jobs(self)
        self.plugins = Plugins(self)
        self.pipelines = Pipelines(self)
        self.schedules = Schedules(self)
        self.analytics = Analytics(self)
        self.system = System(self)
        self.vault = Vault(self, vault)
        self.webhooks = Webhooks(self)
