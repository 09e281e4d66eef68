"""The composition root: boot, run and stop the gateway (operations.md §1–2).

It sits above ``runtime/`` and ``api/`` (ARCHITECTURE §2) so that it alone wires the loops to the
servers; nothing below it imports it.

Boot order: config → plugin discovery and pipelines → PID lock → state DB (projections caught up)
→ the vault (age key, blob, the agreement check of vault.md §3) → config snapshot → crash recovery, beside the API's start → ``GatewayStarted``; the dispatcher and
the scheduler start once recovery is done. Any boot failure is one ERROR line plus the same text on
stderr, everything opened is closed, and the exit code is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import ductile
from ductile.app import jobs
from ductile.app.facade import Ductile
from ductile.app.reload import Reload, Reloader, ReloadRefused
from ductile.app.routing import Router
from ductile.app.vault import VaultBootRefused, VaultKeeper, boot_vault
from ductile.cli.progress import progress_bar
from ductile.commands.schedule_plan import Spec
from ductile.config.discovery import ConfigSource
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.config.model import DEFAULT_MAX_ATTEMPTS, Config, PluginEntry
from ductile.config.redaction import snapshot_document
from ductile.config.secret_refs import SecretRef
from ductile.config.secret_refs import resolve as resolve_secret_ref
from ductile.config.webhooks import check_secret_refs as check_webhook_secret_refs
from ductile.events.log import EventLog
from ductile.events.postgres_store import PostgresUnavailable
from ductile.events.schema import UnknownSchema
from ductile.events.store import is_database_error
from ductile.events.timefmt import NS, now_ns, rfc3339
from ductile.events.types import ConfigSnapshotted, GatewayStarted, GatewayStopped, JobDead, JobRecovered
from ductile.pipelines.compiler import Compiled, compile_pipelines
from ductile.pipelines.graph import Pipeline
from ductile.plugins.discovery import DiscoveryError
from ductile.projections.registry import default_runner
from ductile.runtime import cluster
from ductile.runtime.catalog import Catalog, load_catalog
from ductile.runtime.cluster import Cluster
from ductile.runtime.config_check import admit_boot, reload_refusal
from ductile.runtime.dispatcher import Dispatcher
from ductile.runtime.metrics import Metrics
from ductile.runtime.retention import Retention
from ductile.runtime.scheduler import Scheduler, load_specs
from ductile.runtime.services import Services
from ductile.system import logs
from ductile.system.build_info import build_info
from ductile.system.logs import Log
from ductile.system.pidlock import PidLock, PidLockHeld, pid_path
from ductile.vault.blob import VaultBlobError
from ductile.vault.keys import AgeKeyError

if TYPE_CHECKING:
    import uvicorn
    from litestar.types import ASGIApp

    from ductile.api.holder import AppHolder
    from ductile.api.webhooks import WebhookApp


log = Log("main")
route_log = Log("router")
COMPONENT_STOP_SECONDS = 12.0  # uvicorn's 10 s for in-flight requests, plus a margin
CANCEL_SECONDS = 2.0
EXIT_DEADLINE_SECONDS = 5.0


class BootError(RuntimeError):
    pass


async def _serve_api(server: uvicorn.Server) -> None:
    """``server.serve()``, except that a failed bind is an error rather than the process's end.

    uvicorn logs why it cannot bind and then raises SystemExit, which asyncio lets escape the
    loop: the gateway would end with uvicorn's exit code and no boot-failed message.
    """
    try:
        await server.serve()
    except SystemExit:
        raise BootError("the server could not start (see the uvicorn.error line above)") from None


def load_pipelines(config: Config, catalog: Catalog) -> Compiled:
    """Compile ``pipelines:``; any load error refuses the config, listing every problem."""
    compiled = compile_pipelines(
        config.pipelines, enabled=set(catalog.plugins), configured=set(config.plugins),
        configured_enabled={name for name, entry in config.plugins.items() if entry.enabled},
        relay_instances=config.relay_instance_names(),
    )
    if compiled.errors:
        raise ConfigError("\n".join(compiled.errors))
    cfg_log = Log("config")
    for problem in compiled.doctor:
        cfg_log.error(problem)
    for warning in compiled.warnings:
        cfg_log.warn(warning)
    return compiled


def token_entries(config: Config, vault: VaultKeeper | None) -> list[tuple[str | SecretRef, list[str]]]:
    """``api.auth.tokens`` as ``(literal | SecretRef, scopes)``: each ``secret_ref`` checked against
    the gateway-visible vault secrets now (config.md §4.3; a missing one refuses boot, whether or
    not the API is served) and read fresh per request after."""
    entries: list[tuple[str | SecretRef, list[str]]] = []
    document = vault.document() if vault is not None else None
    for index, entry in enumerate(config.api.tokens):
        if entry.secret_ref is None:
            entries.append((entry.token or "", entry.scopes))
            continue
        resolved = resolve_secret_ref(document, entry.secret_ref, f"api.auth.tokens[{index}]")
        for warning in resolved.warnings:
            Log("config").warn(warning)
        entries.append((SecretRef(resolved.name), entry.scopes))
    return entries


def build_router(config: Config, catalog: Catalog, pipelines: dict[str, Pipeline]) -> Router:
    def entry(plugin: str) -> PluginEntry | None:
        loaded = catalog.get(plugin)
        return loaded.entry if loaded is not None else None

    return Router(
        pipelines=pipelines,
        max_attempts=lambda p: e.retry.max_attempts if (e := entry(p)) else DEFAULT_MAX_ATTEMPTS,
        plugin_config=lambda p: e.config if (e := entry(p)) else {},
        notify_on_complete=lambda p: bool(e.notify_on_complete) if (e := entry(p)) else False,
        hook_max_depth=config.service.hook_max_depth,
        dedupe_ttl=int(config.service.dedupe_ttl * NS),
        unmatched=lambda job, e: route_log.debug("event matched no route", job_id=job.job_id, plugin=job.plugin,
                                                 event_type=e.get("type"), event_id=e.get("event_id")),
    )


def check_webhook_secrets(config: Config, vault: VaultKeeper | None) -> None:
    """Each webhook endpoint's ``secret_ref`` names a gateway-visible vault secret (webhooks.md §1);
    the value is read again per request (``Ductile.webhooks.secret``)."""
    found = check_webhook_secret_refs(config.webhooks, vault.document() if vault is not None else None)
    for warning in found.warnings:
        Log("config").warn(warning)
    if found.errors:
        raise found.errors[0]


def load_plugins(config: Config) -> tuple[Catalog, Compiled]:
    """Plugin discovery, then the pipelines over it: the parts of a runtime read from disk."""
    catalog = load_catalog(config)
    return catalog, load_pipelines(config, catalog)


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Everything one config decides, built whole before it serves (at boot, and beside the running
    one at a reload); ``Gateway.swap`` puts a new one in place."""

    config: Config
    catalog: Catalog
    pipelines: Compiled
    router: Router
    schedules: list[Spec]
    snapshot_id: str
    facade: Ductile
    app: ASGIApp | None  # the public API (None when api.enabled is false), per-plugin and per-pipeline routes included
    management_app: ASGIApp | None  # /vault/* on the management socket (None without a vault or a socket)
    webhook_app: WebhookApp | None  # the webhook listener's app (None without webhooks.listen)
    tokens: int  # API tokens resolved (require_api_auth counts them)


def build_runtime(config: Config, catalog: Catalog, compiled: Compiled, *, events: EventLog, services: Services,
                  vault: VaultKeeper | None, metrics: Metrics, snapshot_id: str, reload: Reload) -> Runtime:
    """The one way a runtime is built from a config (boot and reload). Raises ``ConfigError`` when
    the config cannot run (a ``secret_ref`` missing from the vault, ...); it starts nothing."""
    tokens = token_entries(config, vault)  # a secret_ref not in the vault refuses the config
    check_webhook_secrets(config, vault)
    pipelines = compiled.pipelines
    router = build_router(config, catalog, pipelines)
    specs, warnings = load_specs(config, catalog)
    for w in warnings:
        Log("scheduler").warn(w)
    facade = Ductile(config, catalog, events, services.reads, router=router, pipelines=pipelines, schedule_specs=specs,
                     config_snapshot_id=snapshot_id, vault=vault, reload=reload)
    app = management_app = None
    if config.api.enabled or (vault is not None and config.api.management_socket is not None):
        from ductile.api.app import access_log, create_app, create_management_app
        from ductile.api.auth import TokenSet

        if config.api.enabled:
            if not tokens:
                log.warn("api enabled with no tokens: every protected route will answer 401")
            token_set = TokenSet(tokens, vault.document if vault is not None else lambda: None)
            # The access log wraps the whole app: Litestar middleware would miss 404/405 answers.
            app = access_log(create_app(facade, services, token_set, metrics=metrics))
        if vault is not None and config.api.management_socket is not None:
            management_app = access_log(create_management_app(facade, services))
    webhook_app = None
    if config.webhooks.listen is not None:
        from ductile.api.webhooks import EndpointTable, WebhookApp

        # Built even with no endpoint served, so that a reload can empty the table (every path 404).
        webhook_app = WebhookApp(facade, EndpointTable(config.webhooks), metrics)
    return Runtime(config=config, catalog=catalog, pipelines=compiled, router=router, schedules=specs,
                   snapshot_id=snapshot_id, facade=facade, app=app, management_app=management_app,
                   webhook_app=webhook_app, tokens=len(tokens))


class Gateway:
    def __init__(self, source: ConfigSource) -> None:
        self.source = source
        self.stop_requested = asyncio.Event()
        self._force = False
        self._lock: PidLock | None = None
        self._dispatcher: Dispatcher | None = None
        self._services: Services | None = None
        self.pipelines: Compiled | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.events: EventLog | None = None
        self.vault: VaultKeeper | None = None  # the loaded vault; None when there is none
        self.runtime: Runtime | None = None  # the one serving; a reload swaps it
        self._reloader: Reloader[Runtime] | None = None
        self._metrics: Metrics | None = None
        self._scheduler: Scheduler | None = None
        self._api: AppHolder | None = None
        self._management: AppHolder | None = None
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._watch_changed = asyncio.Event()
        self._signal_reloads: set[asyncio.Task[object]] = set()
        self._webhooks: AppHolder | None = None  # the webhook listener's app, once it listens
        self._webhook_server: uvicorn.Server | None = None
        self._retention: Retention | None = None
        self._cluster: Cluster | None = None  # this node's membership on a shared PostgreSQL store
        self._plugins_stopped = False  # the dispatcher stopped: no plugin of ours runs any more

    async def run(self) -> int:
        # Before anything else: a SIGHUP during boot must not kill the gateway, and a SIGTERM
        # during boot must still end in a graceful stop once boot is done.
        self._install_signals(asyncio.get_running_loop())
        try:
            config = self._load()
            catalog, compiled = load_plugins(config)
            self.pipelines = compiled
            self._lock = PidLock(pid_path(config.state_path)).acquire()
            events = EventLog(config.store(), config.service.durability, default_runner())
            self.events = events
            bar = progress_bar("catching up projections")
            try:
                await events.open(progress=bar)
            finally:
                if bar is not None:
                    bar.close()
            # After the log is open: the boot check of vault.md §3 may append (revert or adopt).
            self.vault = await asyncio.to_thread(boot_vault, config, events, os.environ, Path.home())
            self._services = Services(events, api_enabled=config.api.enabled)
            self._cluster = self._services.cluster = cluster.for_store(events, config)
            self._metrics = Metrics(config.service.max_workers, ductile.__version__, build_info()["commit"])
            events.on_commit(self._metrics.observe)
            self._reloader = Reloader(events, self, count=self._metrics.config_reload)
            runtime = self._build(config, catalog, compiled, str(uuid.uuid4()))  # a missing secret_ref refuses boot
            # Integrity (config.md §6.3) and the admission gates (§7): a refusal is a ConfigError.
            document = self.vault.document() if self.vault is not None else None
            for warning in admit_boot(config, catalog, compiled, document, runtime.tokens):
                Log("config").warn(warning)
        except (ConfigError, DiscoveryError, PidLockHeld, UnknownSchema, BootError, OSError, sqlite3.Error,
                VaultBootRefused, AgeKeyError, VaultBlobError, PostgresUnavailable) as exc:
            return self._boot_failed(str(exc))
        except Exception as exc:
            if not is_database_error(exc):  # a PostgreSQL store's refusal (permissions, a read-only server)
                raise
            return self._boot_failed(str(exc))
        try:
            return await self._serve(runtime, events)
        except Exception as exc:
            # A fault inside the gateway: one ERROR line, exit 1, so a service manager restarts it.
            log.error("gateway failed", exc=exc)
            print(f"gateway failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            await _cancel_bounded(self._tasks)
            return 1
        finally:
            if self._cluster is not None:
                # After a fault, plugins may outlive us: the lease then runs out rather than
                # handing their jobs to another node at once.
                await self._cluster.leave(release=self._plugins_stopped)
            if self._services is not None:
                await self._services.close()  # its read connections' threads would outlive us
            await events.aclose()
            if self._lock is not None:
                self._lock.release()

    def _build(self, config: Config, catalog: Catalog, compiled: Compiled, snapshot_id: str) -> Runtime:
        assert self.events is not None and self._services is not None and self._metrics is not None
        assert self._reloader is not None
        return build_runtime(config, catalog, compiled, events=self.events, services=self._services, vault=self.vault,
                             metrics=self._metrics, snapshot_id=snapshot_id, reload=self._reloader.reload)

    # --- reload (config.md §8): the steps ``Reloader`` runs, in its order --------------------------

    def load(self) -> Config:
        return self._load()

    def running_config(self) -> Config:
        assert self.runtime is not None
        return self.runtime.config

    async def admit(self, running: Config, new: Config) -> str | None:
        """Integrity (config.md §6.3) and the gates (§7), on in the running or the new config."""
        document = self.vault.document() if self.vault is not None else None
        return await asyncio.to_thread(reload_refusal, running, new, document=document)

    async def build(self, config: Config, snapshot_id: str) -> Runtime:
        try:
            catalog, compiled = await asyncio.to_thread(load_plugins, config)
            return self._build(config, catalog, compiled, snapshot_id)
        except (ConfigError, DiscoveryError) as exc:
            raise ReloadRefused(str(exc)) from None

    async def discard(self, runtime: Runtime) -> None:
        """A built runtime that will not serve: it started nothing, so there is nothing to stop."""

    async def swap(self, runtime: Runtime) -> None:
        """Put ``runtime`` in place of the running one. Claims use the new catalog and router from
        here on; requests already in flight (SSE streams included) finish on the app they began on."""
        self.runtime = runtime
        self.pipelines = runtime.pipelines
        if self._dispatcher is not None:
            service = runtime.config.service
            self._dispatcher.swap(runtime.catalog, runtime.router, max_workers=service.max_workers,
                                  env_passthrough=service.plugin_env_passthrough)
        if self._retention is not None:
            self._retention.service = runtime.config.service  # the retention windows of the new config
        if self._scheduler is not None:
            await self._scheduler.replan(runtime.config, runtime.catalog, runtime.schedules)
        if self._management is not None and runtime.management_app is not None:
            self._management.swap(runtime.management_app)
        if self._services is not None:
            self._services.posture = "gateway" if runtime.config.api.enabled else "closed"
        if runtime.webhook_app is not None and self._webhooks is not None:
            self._webhooks.swap(runtime.webhook_app)  # requests in flight finish under their set
        elif runtime.webhook_app is not None and runtime.config.webhooks.served:
            await self._open_webhooks(runtime.config, runtime.webhook_app)
        # Last, as it may bind or close a socket: api.enabled opens or closes the public listener.
        if runtime.app is not None and self._api is not None:
            self._api.swap(runtime.app)
        elif runtime.app is not None:
            await self._open_api(runtime.config, runtime.app)
        elif self._api_server is not None:
            self._close_api()

    async def reload_from_signal(self) -> None:
        if self._reloader is None:
            log.warn("config reload failed: the gateway is still starting; send SIGHUP again once it has started")
            return
        await self._reloader.reload()  # the outcome is logged and recorded there

    def _load(self) -> Config:
        config = load_config(self.source)
        logs.configure(config.service.log_level, config.service.log_format)
        log.info("configuration loaded", config_source=self.source.source, config_path=str(self.source.root_file))
        cfg_log = Log("config")
        for w in config.warnings:
            cfg_log.warn(w.message, field=w.field, file=w.file)
        return config

    def _boot_failed(self, message: str) -> int:
        log.error(message)
        print(message, file=sys.stderr)
        if self.events is not None:
            self.events.close()
        if self._lock is not None:
            self._lock.release()
        return 1

    async def _serve(self, runtime: Runtime, events: EventLog) -> int:
        config, catalog = runtime.config, runtime.catalog
        services = self._services
        assert services is not None and self._reloader is not None
        services.live.bind(asyncio.get_running_loop())
        await events.append("system", [ConfigSnapshotted(snapshot_id=runtime.snapshot_id, reason="startup",
                                                         config=snapshot_document(config), at=now_ns())])
        self.runtime = runtime
        dispatcher = Dispatcher(
            events, catalog, max_workers=config.service.max_workers, router=runtime.router,
            env_passthrough=config.service.plugin_env_passthrough, state_dir=config.state_path.parent,
            config_snapshot_id=self._snapshot_id, live=services.live, vault=self.vault,
            node=self._cluster.node if self._cluster is not None else None,
        )
        self._dispatcher = dispatcher
        node = self._cluster
        if node is not None:
            # Before recovery and the first claim (which names this node): the lease, and wake-ups
            # from the other nodes' commits for the dispatcher and every follower (SSE included).
            def commit_elsewhere() -> None:
                events.committed_elsewhere()
                dispatcher.wake()

            await node.join(commit_elsewhere)
        # Survivors that ignore SIGTERM take a 5 s grace to kill: the API comes up meanwhile, while
        # the dispatcher and the scheduler start only once recovery is done (jobs.md §8).
        recovery = asyncio.create_task(self._recover(events, dispatcher), name="recovery")
        retention = self._retention = Retention(events, config)
        async def on_tick(now: int) -> None:
            services.last_tick_ns = now
            services.live.publish("scheduler.tick", {"at": rfc3339(now)})
            await retention.run(now)

        scheduler = self._scheduler = Scheduler(events, config, catalog, on_tick=on_tick, specs=runtime.schedules)
        if node is None:
            scheduler_task = asyncio.create_task(_after(recovery, scheduler.run), name="scheduler")
        else:  # one scheduler in the cluster: this node's runs while it holds the lock
            scheduler_task = asyncio.create_task(
                _after(recovery, lambda: node.lead(scheduler.run, scheduler.stop)), name="scheduler")
        tasks = [asyncio.create_task(_after(recovery, dispatcher.run), name="dispatcher"), scheduler_task]
        if node is not None:
            tasks.append(asyncio.create_task(_after(recovery, lambda: node.run(dispatcher.threshold)), name="cluster"))
        self._tasks = tasks
        servers: list[uvicorn.Server] = []
        try:
            if runtime.management_app is not None and config.api.management_socket is not None:
                # vault.md §7: whenever a vault is loaded, whatever the API's posture.
                from ductile.api.server import ManagementSocketRefused

                try:
                    servers.append(await self._serve_management(runtime.management_app,
                                                                config.api.management_socket, tasks))
                except (ManagementSocketRefused, OSError) as exc:
                    raise BootError(f"vault: management socket: {exc}") from None
            if runtime.app is not None:
                await self._open_api(config, runtime.app)
            if runtime.webhook_app is not None and config.webhooks.served:
                await self._open_webhooks(config, runtime.webhook_app)
        except BootError as exc:
            await dispatcher.stop(0)
            for t in [recovery, *tasks]:  # recovery too: it would append to the log closed below
                t.cancel()
            await asyncio.gather(recovery, *tasks, return_exceptions=True)
            return self._boot_failed(str(exc))
        await events.append("system", [GatewayStarted(version=ductile.__version__, pid=os.getpid(),
                                                      posture=services.posture, at=now_ns())])
        log.info("gateway started", posture=services.posture, api_listen=config.api.listen if config.api.enabled else None,
                 webhooks_listen=config.webhooks.listen if self._webhooks is not None else None,
                 plugins_loaded=len(catalog.plugins), version=ductile.__version__, pid=os.getpid())
        self._reloader.ready()
        # What boot built (modules, the app, the catalog) lives as long as the process: out of the
        # collector's sight, a full collection under load scans only what requests allocate. Boot's
        # heap made each gen-2 pass 56-113 ms, stalling every request in flight (the API's p99).
        gc.freeze()
        failed = await self._wait()
        log.info("shutdown requested")
        services.shutting_down = True
        services.stopping.set()  # ends SSE streams so the API can drain
        for running in [*servers, *([self._api_server] if self._api_server is not None else []),
                        *([self._webhook_server] if self._webhook_server is not None else [])]:
            running.should_exit = True
        await dispatcher.stop(0 if self._force else self._running_config().service.shutdown_grace)
        self._plugins_stopped = True
        scheduler.stop()
        if node is not None:
            node.stop()
        # The API server drains in-flight requests for up to 10 s. asyncio.wait, never a
        # suppressed wait_for: a CancelledError meant for this task must not be swallowed.
        pending = [t for t in self._watched() if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=COMPONENT_STOP_SECONDS)
            await _cancel_bounded(late)
        await services.feed.close()
        scheduler.close()
        retention.close()
        await events.append("system", [GatewayStopped(pid=os.getpid(), at=now_ns())])
        log.info("gateway stopped")
        return 1 if failed else 0

    def _snapshot_id(self) -> str | None:
        return self.runtime.snapshot_id if self.runtime is not None else None

    def _running_config(self) -> Config:
        assert self.runtime is not None
        return self.runtime.config

    def _watched(self) -> list[asyncio.Task[None]]:
        """The components whose end stops the gateway: the loops, the management socket and the
        public API's server (which a reload may open or close)."""
        return [*self._tasks, *([self._api_task] if self._api_task is not None else [])]

    async def _open_api(self, config: Config, app: ASGIApp) -> None:
        """Bind the public listener and serve ``app`` through a holder a reload can re-point."""
        from ductile.api.holder import AppHolder
        from ductile.api.server import make_server, split_listen

        host, port = split_listen(config.api.listen)
        holder = AppHolder(app)
        server = make_server(holder, host, port)
        task = await _listening(server, "api", config.api.listen)
        self._api, self._api_server, self._api_task = holder, server, task
        self._watch_changed.set()

    async def _open_webhooks(self, config: Config, app: WebhookApp) -> None:
        """The webhook listener (webhooks.md §2) on ``webhooks.listen``, started once an endpoint is
        served; a reload re-points its holder (``webhooks.listen`` itself needs a restart)."""
        from ductile.api.holder import AppHolder
        from ductile.api.server import split_listen
        from ductile.api.webhooks import webhook_server

        listen = config.webhooks.listen or ""
        holder = AppHolder(app)
        host, port = split_listen(listen)
        server = webhook_server(holder, host, port)
        task = await _listening(server, "webhooks", listen)
        self._webhooks, self._webhook_server = holder, server
        self._tasks.append(task)
        self._watch_changed.set()
        log.info("webhook listener started", listen=listen, endpoints=len(config.webhooks.served))

    def _close_api(self) -> None:
        """api.enabled turned off by a reload: the listener drains its requests and closes."""
        assert self._api_server is not None
        self._api_server.should_exit = True
        self._api, self._api_server, self._api_task = None, None, None  # its end is no failure
        self._watch_changed.set()
        log.info("api listener closed (api.enabled is false)")


    async def _serve_management(self, app: ASGIApp, path: Path, tasks: list[asyncio.Task[None]]) -> uvicorn.Server:
        """Bind the management socket and serve ``/vault/*`` on it; the task joins ``tasks``."""
        from ductile.api.holder import AppHolder
        from ductile.api.server import bind_management_socket, make_socket_server

        sock = bind_management_socket(path)
        self._management = AppHolder(app)
        server = make_socket_server(self._management)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                sock.close()
                path.unlink(missing_ok=True)  # a clean stop leaves no stale socket behind

        task = asyncio.create_task(serve(), name="management-socket")
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            raise OSError(f"could not serve on {path}")
        tasks.append(task)
        log.info("management socket listening", path=str(path))
        return server

    async def _wait(self) -> bool:
        stop = asyncio.create_task(self.stop_requested.wait())
        while True:
            # A reload may open or close the API's listener: watch the components anew each time.
            self._watch_changed.clear()
            changed = asyncio.create_task(self._watch_changed.wait())
            done, _ = await asyncio.wait([stop, changed, *self._watched()], return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if done != {changed}:
                break
        stop.cancel()
        failed = [t for t in done if t is not stop and t is not changed]
        for t in failed:
            exc = t.exception() if not t.cancelled() else None
            log.error("component stopped unexpectedly", exc=exc, component=t.get_name(), error=repr(exc))
        return bool(failed)

    async def _recover(self, events: EventLog, dispatcher: Dispatcher) -> None:
        """Crash recovery (jobs.md §8): kill the surviving plugin groups first, all together and
        off the event loop, then re-queue (or mark dead) every job left ``running``."""
        recover_log = Log("dispatch")
        for job_id in await asyncio.to_thread(dispatcher.procs.kill_survivors):
            recover_log.warn("killed surviving plugin process group", job_id=job_id)
        if self._cluster is not None:  # a shared store: this node's own jobs, and those nobody runs
            recs = await self._cluster.recover_at_boot(dispatcher.threshold)
        else:
            recs = await events.submit(lambda tx: jobs.recover_running(tx, dispatcher.threshold))
        for rec in recs:
            e = rec.event
            if isinstance(e, JobRecovered | JobDead):
                recover_log.warn("orphaned job recovered" if isinstance(e, JobRecovered) else "orphaned job marked dead",
                                 job_id=e.job_id, attempt=e.attempt, error=e.error)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        def stop() -> None:
            if self.stop_requested.is_set():
                self._force = True  # a second signal skips the remaining grace period
                if self._dispatcher is not None:
                    self._dispatcher.skip_grace()
            self.stop_requested.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        def reload() -> None:
            task = asyncio.ensure_future(self.reload_from_signal())
            self._signal_reloads.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._signal_reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)


async def _listening(server: uvicorn.Server, name: str, listen: str) -> asyncio.Task[None]:
    """Serve ``server`` in a task named ``name`` once it listens; a failed bind is a BootError
    (``<name>: failed to listen on <listen>: <why>``)."""
    task = asyncio.create_task(_serve_api(server), name=name)
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        reason = task.exception() if not task.cancelled() else None
        raise BootError(f"{name}: failed to listen on {listen}" + (f": {reason}" if reason else ""))
    return task


async def _after(first: asyncio.Task[None], run: Callable[[], Awaitable[None]]) -> None:
    """``run()`` once ``first`` is done (a failure of ``first`` fails this task too)."""
    await first
    await run()


async def _cancel_bounded(tasks: set[asyncio.Task[None]] | list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and give them a moment to unwind; one that will not end is logged."""
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=CANCEL_SECONDS)
    for t in stuck:
        log.warn("component did not stop when cancelled", component=t.get_name())


def _exit_after(code: int, seconds: float) -> None:
    """The last line of defence of a stop: once the gateway has stopped, the process ends within
    ``seconds`` even if a stray task ignores its cancellation or a non-daemon thread never
    returns (either would otherwise keep ``asyncio.run`` or the interpreter waiting forever)."""

    def expire() -> None:
        time.sleep(seconds)
        stray = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
        log.warn("process did not exit after the gateway stopped; exiting now", seconds=seconds,
                 threads=",".join(stray) or None)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=expire, name="ductile-exit-deadline", daemon=True).start()


def start(source: ConfigSource) -> int:
    logs.configure()

    async def main() -> int:
        code = await Gateway(source).run()
        _exit_after(code, EXIT_DEADLINE_SECONDS)
        return code

    return asyncio.run(main())
