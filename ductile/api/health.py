"""``GET /healthz`` and ``GET /``: open routes for liveness and discovery."""

from __future__ import annotations

import sys

import msgspec

from ductile import __version__
from ductile.api.context import Facade, Runtime
from ductile.api.errors import ApiError, internal
from ductile.api.handlers import get
from ductile.api.schemas import errors
from ductile.events.timefmt import now_ns, rfc3339
from ductile.runtime.cluster import ClusterStatus


class SchedulerHeartbeat(msgspec.Struct, frozen=True):
    """operations.md §9: the scheduler's last tick, and whether it is overdue."""

    last_tick_at: str | None
    late: bool


class Health(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """api.md §3 ``GET /healthz``; ``degraded`` only when the status is."""

    status: str
    uptime_seconds: int
    queue_depth: int
    plugins_loaded: int
    plugins_circuit_open: int
    config_path: str
    binary_path: str
    version: str
    posture: str
    event_log_position: int
    scheduler: SchedulerHeartbeat | None  # always present: null while no schedule is configured (§9)
    degraded: list[str] | msgspec.UnsetType = msgspec.UNSET
    # Several nodes on one PostgreSQL store: this node, the one that runs the scheduler, the leases.
    cluster: ClusterStatus | msgspec.UnsetType = msgspec.UNSET


class Discovery(msgspec.Struct, frozen=True):
    health: str = "/healthz"
    skills: str = "/skills"
    plugins: str = "/plugins"
    openapi: str = "/openapi.json"
    ai_plugin: str = "/.well-known/ai-plugin.json"


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """api.md §3 ``GET /``."""

    name: str = "Ductile Gateway"
    description: str = "Self-hosted automation gateway: durable jobs, schedules, pipelines and plugins."
    version: str
    uptime_seconds: int
    discovery: Discovery = Discovery()


@get("/healthz", responses=errors(500, 503))
async def healthz(ductile: Facade, runtime: Runtime) -> Health:
    if runtime.shutting_down:
        raise ApiError(503, "shutting down")
    try:
        depth, circuit_open = await ductile.system.load()
    except Exception as exc:
        raise internal("failed to compute queue depth", exc) from None
    degraded = ductile.system.degraded_reasons()
    heartbeat = None
    cluster: ClusterStatus | msgspec.UnsetType = msgspec.UNSET
    if runtime.cluster is not None:
        try:
            cluster = await runtime.cluster.status()
        except Exception as exc:
            raise internal("failed to read the cluster's leases", exc) from None
    # A standby node's scheduler waits for the lock: its silence is not lateness.
    standby = not isinstance(cluster, msgspec.UnsetType) and not cluster.runs_scheduler
    if ductile.schedule_specs and not standby:  # null while no schedule is configured
        late_s = runtime.scheduler_lateness(ductile.config.service.tick_interval, now_ns())
        heartbeat = SchedulerHeartbeat(last_tick_at=rfc3339(runtime.last_tick_ns), late=late_s is not None)
        if late_s is not None:
            degraded.insert(0, f"scheduler is late (last tick {late_s}s ago)")
    return Health(
        status="degraded" if degraded else "ok",
        uptime_seconds=runtime.uptime_seconds(),
        queue_depth=depth,
        plugins_loaded=len(ductile.catalog.plugins),
        plugins_circuit_open=circuit_open,
        config_path=str(ductile.config.source.root_file),
        binary_path=sys.argv[0],
        version=__version__,
        posture=runtime.posture,
        event_log_position=ductile.events.head,
        scheduler=heartbeat,
        degraded=degraded or msgspec.UNSET,
        cluster=cluster,
    )


@get("/")
async def root(runtime: Runtime) -> Identity:
    return Identity(version=__version__, uptime_seconds=runtime.uptime_seconds())
