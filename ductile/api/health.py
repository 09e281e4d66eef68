"""``GET /healthz`` and ``GET /``: open routes for liveness and discovery."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from litestar import Request, get

import ductile
from ductile.api.context import services_of
from ductile.api.errors import ApiError, internal
from ductile.projections.job_queries import queue_depth
from ductile.projections.schedule_queries import open_breaker_plugins
from ductile.runtime.services import Services

if TYPE_CHECKING:
    import aiosqlite


async def _depth_and_open_breakers(conn: aiosqlite.Connection) -> tuple[int, int]:
    return await queue_depth(conn), await open_breaker_plugins(conn)


@get("/healthz")
async def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = services_of(request)
    if svc.shutting_down:
        raise ApiError(503, "shutting down")
    try:
        depth, circuit_open = await svc.read(_depth_and_open_breakers)
    except Exception as exc:
        raise internal("failed to compute queue depth", exc) from None
    degraded = degraded_reasons(svc)
    body: dict[str, Any] = {
        "status": "degraded" if degraded else "ok",
        "uptime_seconds": svc.uptime_seconds(),
        "queue_depth": depth,
        "plugins_loaded": len(svc.catalog.plugins),
        "plugins_circuit_open": circuit_open,
        "config_path": str(svc.config.source.root_file),
        "binary_path": sys.argv[0],
        "version": ductile.__version__,
        "posture": svc.posture,
        "event_log_position": svc.events.head,
    }
    if degraded:
        body["degraded"] = degraded
    return body


def degraded_reasons(svc: Services) -> list[str]:
    """Why the gateway serves but is not well (operations.md §9); empty when it is."""
    reasons = []
    if (unwritable := svc.events.unwritable) is not None:
        reasons.append(f"event log not writable: {unwritable}")
    return reasons


@get("/")
async def root(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = services_of(request)
    return {
        "name": "Ductile Gateway",
        "description": "Self-hosted automation gateway: durable jobs, schedules, pipelines and plugins.",
        "version": ductile.__version__,
        "uptime_seconds": svc.uptime_seconds(),
        "discovery": {"health": "/healthz", "skills": "/skills", "plugins": "/plugins", "openapi": "/openapi.json",
                      "ai_plugin": "/.well-known/ai-plugin.json"},
    }
