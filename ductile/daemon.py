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
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import ductile
from ductile.app import jobs
from ductile.app.facade import Ductile
from ductile.app.routing import Router
from ductile.app.vault import VaultBootRefused, VaultKeeper, boot_vault
from ductile.cli.progress import progress_bar
from ductile.config.discovery import ConfigSource
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.config.model import DEFAULT_MAX_ATTEMPTS, Config, PluginEntry
from ductile.config.redaction import snapshot_document
from ductile.config.secret_refs import SecretRef
from ductile.config.secret_refs import resolve as resolve_secret_ref
from ductile.config.webhooks import check_secret_refs as check_webhook_secret_refs
from ductile.events.log import EventLog
from ductile.events.schema import UnknownSchema
from ductile.events.timefmt import NS, now_ns, rfc3339
from ductile.events.types import ConfigSnapshotted, GatewayStarted, GatewayStopped, JobDead, JobRecovered
from ductile.pipelines.compiler import Compiled, compile_pipelines
from ductile.pipelines.graph import Pipeline
from ductile.plugins.discovery import DiscoveryError
from ductile.projections.registry import default_runner
from ductile.runtime.catalog import Catalog, load_catalog
from ductile.runtime.config_check import admit_boot
from ductile.runtime.dispatcher import Dispatcher
from ductile.runtime.retention import Retention
from ductile.runtime.scheduler import Scheduler
from ductile.runtime.services import Services
from ductile.system import logs
from ductile.system.logs import Log
from ductile.system.pidlock import PidLock, PidLockHeld, pid_path
from ductile.vault.blob import VaultBlobError
from ductile.vault.keys import AgeKeyError

if TYPE_CHECKING:
    import uvicorn

    from ductile.api.webhooks import EndpointTable
    from ductile.runtime.metrics import Metrics


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


def check_webhook_secrets(config: Config, vault: VaultKeeper | None) -> None:
    """Each webhook endpoint's ``secret_ref`` names a gateway-visible vault secret (webhooks.md §1);
    the value is read again per request (``Ductile.webhooks.secret``)."""
    found = check_webhook_secret_refs(config.webhooks, vault.document() if vault is not None else None)
    for warning in found.warnings:
        Log("config").warn(warning)
    if found.errors:
        raise found.errors[0]


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
        self.webhook_table: EndpointTable | None = None  # served webhook endpoints; a reload swaps .current

    async def run(self) -> int:
        # Before anything else: a SIGHUP during boot must not kill the gateway, and a SIGTERM
        # during boot must still end in a graceful stop once boot is done.
        self._install_signals(asyncio.get_running_loop())
        try:
            config, catalog = self._load()
            self._lock = PidLock(pid_path(config.state_path)).acquire()
            events = EventLog(config.state_path, config.service.durability, default_runner())
            self.events = events
            bar = progress_bar("catching up projections")
            try:
                await events.open(progress=bar)
            finally:
                if bar is not None:
                    bar.close()
            # After the log is open: the boot check of vault.md §3 may append (revert or adopt).
            self.vault = await asyncio.to_thread(boot_vault, config, events, os.environ, Path.home())
            tokens = token_entries(config, self.vault)  # a secret_ref not in the vault refuses boot
            check_webhook_secrets(config, self.vault)
            # Integrity (config.md §6.3) and the admission gates (§7): a refusal is a ConfigError.
            for warning in admit_boot(config, catalog, self.pipelines, self.vault.document() if self.vault else None,
                                      len(tokens)):
                Log("config").warn(warning)
        except (ConfigError, DiscoveryError, PidLockHeld, UnknownSchema, BootError, OSError, sqlite3.Error,
                VaultBootRefused, AgeKeyError, VaultBlobError) as exc:
            return self._boot_failed(str(exc))
        try:
            return await self._serve(config, catalog, events, tokens)
        except Exception as exc:
            # A fault inside the gateway: one ERROR line, exit 1, so a service manager restarts it.
            log.error("gateway failed", exc=exc)
            print(f"gateway failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            await _cancel_bounded(self._tasks)
            return 1
        finally:
            if self._services is not None:
                await self._services.close()  # its read connections' threads would outlive us
            await events.aclose()
            if self._lock is not None:
                self._lock.release()

    def _load(self) -> tuple[Config, Catalog]:
        config = load_config(self.source)
        logs.configure(config.service.log_level, config.service.log_format)
        log.info("configuration loaded", config_source=self.source.source, config_path=str(self.source.root_file))
        cfg_log = Log("config")
        for w in config.warnings:
            cfg_log.warn(w.message, field=w.field, file=w.file)
        catalog = load_catalog(config)
        self.pipelines = load_pipelines(config, catalog)
        return config, catalog

    def _boot_failed(self, message: str) -> int:
        log.error(message)
        print(message, file=sys.stderr)
        if self.events is not None:
            self.events.close()
        if self._lock is not None:
            self._lock.release()
        return 1

    async def _serve(self, config: Config, catalog: Catalog, events: EventLog,
                     tokens: list[tuple[str | SecretRef, list[str]]]) -> int:
        services = self._services = Services(events, api_enabled=config.api.enabled)
        services.live.bind(asyncio.get_running_loop())
        pipelines = self.pipelines.pipelines if self.pipelines else {}
        snapshot_id = str(uuid.uuid4())
        await events.append("system", [
            ConfigSnapshotted(snapshot_id=snapshot_id, reason="startup", config=snapshot_document(config), at=now_ns())
        ])
        router = build_router(config, catalog, pipelines)
        dispatcher = Dispatcher(
            events, catalog, max_workers=config.service.max_workers, router=router,
            env_passthrough=config.service.plugin_env_passthrough, state_dir=config.state_path.parent,
            config_snapshot_id=lambda: snapshot_id, live=services.live, vault=self.vault,
        )
        self._dispatcher = dispatcher
        # Survivors that ignore SIGTERM take a 5 s grace to kill: the API comes up meanwhile, while
        # the dispatcher and the scheduler start only once recovery is done (jobs.md §8).
        recovery = asyncio.create_task(self._recover(events, dispatcher), name="recovery")
        retention = Retention(events, config)
        async def on_tick(now: int) -> None:
            services.live.publish("scheduler.tick", {"at": rfc3339(now)})
            await retention.run(now)

        scheduler = Scheduler(events, config, catalog, on_tick=on_tick)
        gateway = Ductile(config, catalog, events, services.reads, router=router, pipelines=pipelines,
                          schedule_specs=scheduler.specs, config_snapshot_id=snapshot_id, vault=self.vault)
        scheduler_task = asyncio.create_task(_after(recovery, scheduler.run), name="scheduler")
        tasks = [asyncio.create_task(_after(recovery, dispatcher.run), name="dispatcher"), scheduler_task]
        self._tasks = tasks
        servers: list[uvicorn.Server] = []
        if self.vault is not None and config.api.management_socket is not None:
            # vault.md §7: whenever a vault is loaded, whatever the API's posture.
            from ductile.api.server import ManagementSocketRefused

            try:
                servers.append(await self._serve_management(gateway, config.api.management_socket, tasks))
            except (ManagementSocketRefused, OSError) as exc:
                await dispatcher.stop(0)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                return self._boot_failed(f"vault: management socket: {exc}")
        server = None
        metrics = None
        if config.api.enabled:
            from ductile.api.app import access_log, create_app
            from ductile.api.auth import TokenSet
            from ductile.runtime.metrics import Metrics
            from ductile.system.build_info import build_info

            metrics = Metrics(config.service.max_workers, ductile.__version__, build_info()["commit"])
            events.on_commit(metrics.observe)
            from ductile.api.server import make_server, split_listen

            if not tokens:
                log.warn("api enabled with no tokens: every protected route will answer 401")
            token_set = TokenSet(tokens, self.vault.document if self.vault is not None else lambda: None)
            host, port = split_listen(config.api.listen)
            # The access log wraps the whole app: Litestar middleware would miss 404/405 answers.
            server = make_server(access_log(create_app(gateway, services, token_set, metrics=metrics)), host, port)
            server_task = asyncio.create_task(_serve_api(server), name="api")
            while not server.started and not server_task.done():
                await asyncio.sleep(0.01)
            if server_task.done():
                reason = server_task.exception() if not server_task.cancelled() else None
                await dispatcher.stop(0)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                return self._boot_failed(f"api: failed to listen on {config.api.listen}" + (f": {reason}" if reason else ""))
            tasks.append(server_task)
        if config.webhooks.served:
            try:
                servers.append(await self._serve_webhooks(gateway, config, metrics, tasks))
            except BootError as exc:
                await dispatcher.stop(0)
                await _cancel_bounded(tasks)
                return self._boot_failed(str(exc))
        await events.append("system", [GatewayStarted(version=ductile.__version__, pid=os.getpid(),
                                                      posture=services.posture, at=now_ns())])
        log.info("gateway started", posture=services.posture, api_listen=config.api.listen if config.api.enabled else None,
                 webhooks_listen=config.webhooks.listen if config.webhooks.served else None,
                 plugins_loaded=len(catalog.plugins), version=ductile.__version__, pid=os.getpid())
        failed = await self._wait(tasks)
        log.info("shutdown requested")
        services.shutting_down = True
        services.stopping.set()  # ends SSE streams so the API can drain
        for running in [*servers, *([server] if server is not None else [])]:
            running.should_exit = True
        await dispatcher.stop(0 if self._force else config.service.shutdown_grace)
        scheduler.stop()
        # The API server drains in-flight requests for up to 10 s. asyncio.wait, never a
        # suppressed wait_for: a CancelledError meant for this task must not be swallowed.
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=COMPONENT_STOP_SECONDS)
            await _cancel_bounded(late)
        await services.feed.close()
        scheduler.close()
        retention.close()
        await events.append("system", [GatewayStopped(pid=os.getpid(), at=now_ns())])
        log.info("gateway stopped")
        return 1 if failed else 0

    async def _serve_management(self, gateway: Ductile, path: Path, tasks: list[asyncio.Task[None]]) -> uvicorn.Server:
        """Bind the management socket and serve ``/vault/*`` on it; the task joins ``tasks``."""
        from ductile.api.app import access_log, create_management_app
        from ductile.api.server import bind_management_socket, make_socket_server

        sock = bind_management_socket(path)
        server = make_socket_server(access_log(create_management_app(gateway)))

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

    async def _serve_webhooks(self, gateway: Ductile, config: Config, metrics: Metrics | None,
                              tasks: list[asyncio.Task[None]]) -> uvicorn.Server:
        """The webhook listener (webhooks.md §2) on ``webhooks.listen``; its task joins ``tasks``.
        ``self.webhook_table`` is what a reload swaps."""
        from ductile.api.server import split_listen
        from ductile.api.webhooks import EndpointTable, WebhookApp, webhook_server

        listen = config.webhooks.listen or ""
        self.webhook_table = EndpointTable(config.webhooks)
        host, port = split_listen(listen)
        server = webhook_server(WebhookApp(gateway, self.webhook_table, metrics), host, port)
        task = asyncio.create_task(_serve_api(server), name="webhooks")
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            reason = task.exception() if not task.cancelled() else None
            raise BootError(f"webhooks: failed to listen on {listen}" + (f": {reason}" if reason else ""))
        tasks.append(task)
        log.info("webhook listener started", listen=listen, endpoints=len(self.webhook_table.current))
        return server

    async def _wait(self, tasks: list[asyncio.Task[None]]) -> bool:
        stop = asyncio.create_task(self.stop_requested.wait())
        done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        failed = [t for t in done if t is not stop]
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
        loop.add_signal_handler(signal.SIGHUP, lambda: log.warn("config reload failed: reload is not available yet"))


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
