"""Hot reload (config.md §8): the decision and the order of its steps, without process state.

One code path for SIGHUP, ``POST /system/reload`` and ``ductile system reload``: ``Reloader.reload``.
Reloads are serialized (a second request waits for the first, then runs its own). The steps:
load the on-disk config, refuse what a reload may not change (``refusal``), build the complete new
runtime beside the running one, record the snapshot, then swap. What a runtime is and how it is
built and swapped belongs to the composition root, which hands those steps in (``Steps``); a
failure before the swap leaves the running runtime untouched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import blake3
import msgspec

from ductile.config.errors import ConfigError
from ductile.config.model import Config
from ductile.config.redaction import snapshot_document
from ductile.events.log import EventLog
from ductile.events.timefmt import now_ns, rfc3339
from ductile.events.types import ConfigReloaded, ConfigReloadRejected, ConfigSnapshotted
from ductile.plugins.discovery import DiscoveryError
from ductile.system.logs import Log

log = Log("config")

# config.md §8, step 3: what only a full restart may change (the listeners and the state DB).
RESTART_ONLY_KEYS = ("state.path", "state.url", "service.durability", "api.listen", "api.management_socket",
                     "webhooks.listen", "service.node_id", "service.node_lease")
REJECTED_PREFIX = "config reload rejected: "
RELOADED_MESSAGE = "configuration reloaded"
RELOADED_LOG = "config reloaded successfully"
FAILED_LOG = "config reload failed"
SNAPSHOT_REASON = "reload"
SYSTEM_STREAM = "system"

R = TypeVar("R")


class ReloadStatus(StrEnum):
    OK = "ok"
    REJECTED = "rejected"


class ReloadOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a reload did; the API and ``system reload --json`` show it as it is."""

    status: ReloadStatus
    reloaded_at: str | None = None
    message: str | None = None
    error: str | None = None  # the whole ``config reload rejected: ...`` text


class ReloadRefused(Exception):
    """A step refused the new config; ``str()`` is the reason without the ``rejected`` prefix."""


def rejected(reason: str) -> str:
    """The whole rejection text. A gate's reason is whole already, with its own form of the prefix
    (``config reload rejected (admission.fail_on_drift): ...``, config.md §7): never prefixed twice."""
    return reason if reason.startswith(REJECTED_PREFIX.removesuffix(": ")) else REJECTED_PREFIX + reason


def _restart_only_values(config: Config) -> dict[str, Any]:
    def raw(section: Any, key: str) -> Any:
        return section.get(key) if isinstance(section, dict) else None

    return {
        "state.path": config.state_path,
        "state.url": raw(config.raw.get("state"), "url"),
        "service.durability": config.service.durability,
        "api.listen": config.api.listen,
        # As written: the default follows state.path, whose change is named on its own.
        "api.management_socket": raw(config.raw.get("api"), "management_socket"),
        "webhooks.listen": config.webhooks.listen,
        "service.node_id": config.service.node_id,  # a node's identity and lease are taken at start
        "service.node_lease": config.service.node_lease,
    }


def restart_only_changes(running: Config, new: Config) -> list[str]:
    """The restart-only keys whose value differs, in the spec's order."""
    old, now = _restart_only_values(running), _restart_only_values(new)
    return [key for key in RESTART_ONLY_KEYS if old[key] != now[key]]


def refusal(running: Config, new: Config) -> str | None:
    """Step 3 of config.md §8: the restart-only keys ``new`` changes, or None. (Step 2, integrity
    and the gates, is the composition root's ``Steps.admit``: it needs plugin discovery.)"""
    changed = restart_only_changes(running, new)
    if changed:
        return f"changes to {', '.join(changed)} require a full restart"
    return None


def snapshot_hash(document: dict[str, Any]) -> str:
    """blake3 of the redacted snapshot's canonical msgpack: the same config, the same hash."""
    return blake3.blake3(msgspec.msgpack.encode(document, order="sorted")).hexdigest()


class Steps(Protocol[R]):
    """What the composition root does at each step; ``R`` is its runtime."""

    def load(self) -> Config: ...

    def running_config(self) -> Config: ...

    async def admit(self, running: Config, new: Config) -> str | None: ...

    async def build(self, config: Config, snapshot_id: str) -> R: ...

    async def swap(self, runtime: R) -> None: ...

    async def discard(self, runtime: R) -> None: ...


class Reloader(Generic[R]):
    def __init__(self, events: EventLog, steps: Steps[R], count: Callable[[str], None] = lambda _: None) -> None:
        self._events = events
        self._steps = steps
        self._count = count
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()

    def ready(self) -> None:
        """The first runtime is serving: reloads asked for during boot run from now on."""
        self._ready.set()

    async def reload(self) -> ReloadOutcome:
        await self._ready.wait()
        async with self._lock:  # serialized: a second request waits for the first, then runs
            try:
                reloaded_at = await self._run()
            except ReloadRefused as exc:
                return await self._reject(str(exc))
        log.info(RELOADED_LOG, reloaded_at=rfc3339(reloaded_at))
        self._count(ReloadStatus.OK)
        return ReloadOutcome(status=ReloadStatus.OK, reloaded_at=rfc3339(reloaded_at), message=RELOADED_MESSAGE)

    async def _run(self) -> int:
        try:
            config = await asyncio.to_thread(self._steps.load)
        except (ConfigError, OSError) as exc:
            raise ReloadRefused(str(exc)) from None
        running = self._steps.running_config()
        try:
            why = await self._steps.admit(running, config) or refusal(running, config)
        except (ConfigError, DiscoveryError, OSError) as exc:  # e.g. plugin discovery refusing the new config
            raise ReloadRefused(str(exc)) from None
        if why is not None:
            raise ReloadRefused(why)
        snapshot_id = str(uuid.uuid4())
        try:
            runtime = await self._steps.build(config, snapshot_id)  # nothing is swapped yet
        except ReloadRefused:
            raise
        except Exception as exc:  # a fault while building: refused all the same, the old runtime serves on
            log.error("building the new runtime failed", exc=exc)
            raise ReloadRefused(f"{type(exc).__name__}: {exc}") from None
        document = snapshot_document(config)
        at = now_ns()
        try:
            # Recorded before the swap: a job of the new runtime never names a snapshot the log lacks.
            await self._events.append(SYSTEM_STREAM, [
                ConfigSnapshotted(snapshot_id=snapshot_id, reason=SNAPSHOT_REASON, config=document, at=at),
                ConfigReloaded(snapshot_id=snapshot_id, snapshot_hash=snapshot_hash(document), at=at),
            ])
        except Exception as exc:
            log.error("config snapshot could not be recorded", exc=exc)
            await self._steps.discard(runtime)
            raise ReloadRefused(f"the config snapshot could not be recorded: {exc}") from None
        await self._steps.swap(runtime)
        return at

    async def _reject(self, reason: str) -> ReloadOutcome:
        error = rejected(reason)
        log.error(f"{FAILED_LOG}: {error}", error=error)
        self._count(ReloadStatus.REJECTED)
        try:
            await self._events.append(SYSTEM_STREAM, [ConfigReloadRejected(error=error, at=now_ns())])
        except Exception as exc:
            log.error("config reload rejection could not be recorded", exc=exc)
        return ReloadOutcome(status=ReloadStatus.REJECTED, error=error)


Reload = Callable[[], Awaitable[ReloadOutcome]]
