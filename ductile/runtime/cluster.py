"""This gateway as one node of several sharing a PostgreSQL store (docs/postgresql.md, "Several
nodes"): its id, its lease, its share of crash recovery, the one scheduler, and the wake-ups that
other nodes' commits send. A SQLite gateway (one node) has no ``Cluster``; nothing here runs.

What is cluster-wide and what is per node:

* A claim runs under the log's write lock, which every node's writer takes: two nodes never claim
  one job, and a plugin's ``parallelism`` counts the running jobs of every node. ``max_workers``
  is each node's own slots.
* Boot recovers only this node's own previous jobs (its id is stable across restarts: the config's
  ``service.node_id``, else one generated once and kept in ``<dir(state.path)>/node-id``). Every
  ``node_lease / 3`` seconds each node renews its lease and reaps: the running jobs of a node whose
  lease expired (or that stopped, or of no recorded node) are re-queued, each attempt moving on,
  so a late result of the interrupted attempt is refused by the job decider.
* One node at a time runs the scheduler: the holder of an advisory lock on its node session. A
  standby tries every ``SCHEDULER_TRY_SECONDS``; a dead holder's session ends with it, so a standby
  takes over within that bound. A holder that loses its session stops its scheduler and the
  gateway (exit 1, for the service manager to restart it as a standby): two schedulers never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ductile.app import jobs
from ductile.config.atomic import replace_file
from ductile.config.model import Config
from ductile.events.log import EventLog, WriteTx
from ductile.events.postgres_store import PostgresStore
from ductile.events.record import Recorded
from ductile.events.store import is_database_error
from ductile.system.logs import Log

if TYPE_CHECKING:
    from ductile.events.pg_nodes import Listener, NodeSession

log = Log("cluster")

NODE_ID_FILE = "node-id"
SCHEDULER_TRY_SECONDS = 2.0
_NOT_KEBAB = re.compile(r"[^a-z0-9]+")


class SchedulerLockLost(RuntimeError):
    """The session holding the scheduler's lock ended under a running scheduler."""


class NodeLease(msgspec.Struct, frozen=True):
    """One node's lease as the server sees it: how long ago it was last renewed (server clock)."""

    node: str
    host: str
    pid: int
    renewed_seconds_ago: float
    lease_seconds: float


class ClusterStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``/healthz``'s ``cluster``: this node, who runs the scheduler, and every lease."""

    node: str
    scheduler_node: str | None  # None while no node holds the scheduler's lock
    runs_scheduler: bool
    nodes: list[NodeLease]


def node_id(config: Config) -> str:
    """``service.node_id``, else the id kept beside the state (generated once: host + random)."""
    if config.service.node_id is not None:
        return config.service.node_id
    path = config.state_path.parent / NODE_ID_FILE
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    host = _NOT_KEBAB.sub("-", socket.gethostname().lower()).strip("-") or "node"
    made = f"{host[:40]}-{secrets.token_hex(3)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # fsynced and renamed whole: a crash right after must not leave an empty file, whose next boot
    # would make a second id for the same node and never re-queue the first one's jobs.
    replace_file(path, (made + "\n").encode(), mode=0o644)
    return made


def for_store(events: EventLog, config: Config) -> Cluster | None:
    """The node's cluster membership on a PostgreSQL store; None on SQLite (one node)."""
    store = events.store
    if not isinstance(store, PostgresStore):
        return None
    return Cluster(events, node_id(config), config.service.node_lease, str(store.url))


class Cluster:
    def __init__(self, events: EventLog, node: str, lease_seconds: float, url: str) -> None:
        self.events, self.node, self.lease_seconds, self._url = events, node, lease_seconds, url
        self._session: NodeSession | None = None
        self._listener: Listener | None = None
        self._host = socket.gethostname()
        self.runs_scheduler = False
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End the renew loop and a standby's wait for the scheduler's lock (``leave`` follows)."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when the node is stopping instead."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()

    @property
    def period(self) -> float:
        """How often the lease is renewed and the dead are reaped: a third of the lease, so two
        renewals may fail before anyone reaps this node."""
        return self.lease_seconds / 3

    # --- start and stop ------------------------------------------------------------------------

    async def join(self, on_commit_elsewhere: Callable[[], None]) -> None:
        """Take this node's lease (before any claim names it) and listen for other nodes' commits;
        ``on_commit_elsewhere`` runs on the event loop."""
        from ductile.events import pg_nodes

        self._session = await asyncio.to_thread(pg_nodes.NodeSession, self._url, self.node, self.lease_seconds)
        await asyncio.to_thread(self._session.register, self._host, os.getpid())
        loop = asyncio.get_running_loop()

        def woken() -> None:  # the listener's thread
            with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: nobody to wake
                loop.call_soon_threadsafe(on_commit_elsewhere)

        self._listener = pg_nodes.Listener(self._url, self.node, woken, self._writer_pid)
        self._listener.start()
        log.info("node joined", node=self.node, lease_seconds=self.lease_seconds)

    def _writer_pid(self) -> int | None:
        conn = self.events.writer_connection
        raw = getattr(conn, "raw", None)
        return raw.info.backend_pid if raw is not None and not raw.closed else None

    async def leave(self, release: bool = True) -> None:
        """The end of this node: the scheduler's lock goes with its session. With ``release`` (a
        clean stop, once the dispatcher stopped and killed what outlived the grace) the lease goes
        too, so what this node left running is re-queued by the next reap of any node; without
        (a fault: plugins may still run) the lease runs out first."""
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        if self._session is not None:
            session, self._session = self._session, None
            try:
                if release:
                    await asyncio.to_thread(session.leave)
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                log.warn("node lease not released; it expires on its own", exc=exc, node=self.node)
            finally:
                await asyncio.to_thread(session.close)

    # --- recovery ------------------------------------------------------------------------------

    async def recover_at_boot(self, threshold: jobs.Threshold) -> list[Recorded]:
        """Boot's crash recovery on a shared store: this node's own previous jobs, and any job
        no live node runs. Other live nodes' running jobs are theirs."""
        return await self.events.submit(lambda tx: self._reap(tx, threshold, own=True))

    async def reap(self, threshold: jobs.Threshold) -> list[Recorded]:
        return await self.events.submit(lambda tx: self._reap(tx, threshold, own=False))

    def _reap(self, tx: WriteTx, threshold: jobs.Threshold, own: bool) -> list[Recorded]:
        from ductile.events.pg_nodes import reap_expired

        expired, live = reap_expired(tx.conn)
        if expired:
            log.warn("node lease expired; re-queueing its running jobs", nodes=expired, by=self.node)
        if own:
            live.discard(self.node)
        return jobs.recover_nodes(tx, lambda node: node not in live, threshold)

    # --- the loop: renew, reap -----------------------------------------------------------------

    async def run(self, threshold: jobs.Threshold) -> None:
        failures = 0
        while not await self._pause(self.period):
            try:
                await self._renew()
                for rec in await self.reap(threshold):
                    log.warn("job of a dead node recovered", job_id=getattr(rec.event, "job_id", None),
                             event=type(rec.event).__name__)
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                if failures == 0:
                    log.error("node lease not renewed; retrying", exc=exc, node=self.node)
                failures += 1
                await self._reconnect()
                continue
            if failures:
                log.info("node lease renewed again", node=self.node, tries=failures + 1)
            failures = 0

    async def _renew(self) -> None:
        session = self._session
        if session is None:
            return
        if not await asyncio.to_thread(session.renew):
            # Another node found this one silent for longer than its lease and re-queued its
            # running jobs; their results here will be refused (stale attempts). Carry on afresh.
            log.error("node lease was taken over; its running jobs were re-queued elsewhere", node=self.node)
            await asyncio.to_thread(session.register, self._host, os.getpid())

    async def _reconnect(self) -> None:
        from ductile.events import pg_nodes

        old, self._session = self._session, None
        if old is not None:
            await asyncio.to_thread(old.close)  # its scheduler lock, if any, is gone with it
        try:
            session = await asyncio.to_thread(pg_nodes.NodeSession, self._url, self.node, self.lease_seconds)
            await asyncio.to_thread(session.register, self._host, os.getpid())
        except Exception as exc:
            if not (is_database_error(exc) or isinstance(exc, pg_nodes.PostgresUnavailable)):
                raise
            log.warn("node session not reopened; retrying", exc=exc, node=self.node)
            return
        self._session = session

    # --- the one scheduler ---------------------------------------------------------------------

    async def lead(self, run: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
        """Run the scheduler (``run``) once this node holds the scheduler's lock, for as long as
        it holds it. Raises ``SchedulerLockLost`` when the lock is lost under it."""
        while not await self._try_lock():
            if await self._pause(SCHEDULER_TRY_SECONDS):
                return  # stopping as a standby
        self.runs_scheduler = True
        log.info("this node runs the scheduler", node=self.node)
        scheduler = asyncio.create_task(run(), name="scheduler-loop")
        watch = asyncio.create_task(self._watch_lock(), name="scheduler-lock")
        try:
            done, _ = await asyncio.wait({scheduler, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            stop()
            watch.cancel()
            await asyncio.gather(scheduler, watch, return_exceptions=True)
            raise
        if watch in done and self._stopping.is_set():
            stop()
            await scheduler
            return
        if watch in done:
            stop()
            await asyncio.gather(scheduler, return_exceptions=True)
            self.runs_scheduler = False
            raise SchedulerLockLost("the scheduler's lock was lost with the node session; "
                                    "stopping so that two schedulers never run")
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await scheduler

    async def _try_lock(self) -> bool:
        session = self._session
        if session is None:
            return False
        try:
            return await asyncio.to_thread(session.try_scheduler_lock)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            return False  # the renew loop reports and reconnects the session

    async def _watch_lock(self) -> None:
        while not await self._pause(SCHEDULER_TRY_SECONDS):
            session = self._session
            if session is None:
                return
            try:
                if not await asyncio.to_thread(session.still_holds_scheduler):
                    return
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                log.error("scheduler lock session failed", exc=exc, node=self.node)
                return

    # --- what /healthz shows -------------------------------------------------------------------

    async def status(self) -> ClusterStatus:
        session = self._session
        if session is None:
            return ClusterStatus(node=self.node, scheduler_node=None, runs_scheduler=False, nodes=[])

        def read() -> tuple[str | None, list[tuple[Any, ...]]]:
            return session.scheduler_holder(), session.leases()

        holder, rows = await asyncio.to_thread(read)
        return ClusterStatus(node=self.node, scheduler_node=holder, runs_scheduler=self.runs_scheduler,
                             nodes=[NodeLease(*row) for row in rows])
