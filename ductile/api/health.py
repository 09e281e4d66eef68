"""``GET /healthz`` and ``GET /``: open routes for liveness and discovery."""

from __future__ import annotations

import sys
from typing import Any

from litestar import get

from ductile import __version__
from ductile.api.context import Facade, Runtime
from ductile.api.errors import ApiError, internal
from ductile.api.schemas import errors


@get("/healthz", responses=errors(500, 503))
async def healthz(ductile: Facade, runtime: Runtime) -> dict[str, Any]:
    if runtime.shutting_down:
        raise ApiError(503, "shutting down")
    try:
        depth, circuit_open = await ductile.system.load()
    except Exception as exc:
        raise internal("failed to compute queue depth", exc) from None
    degraded = ductile.system.degraded_reasons()
    body: dict[str, Any] = {
        "status": "degraded" if degraded else "ok",
        "uptime_seconds": runtime.uptime_seconds(),
        "queue_depth": depth,
        "plugins_loaded": len(ductile.catalog.plugins),
        "plugins_circuit_open": circuit_open,
        "config_path": str(ductile.config.source.root_file),
        "binary_path": sys.argv[0],
        "version": __version__,
        "posture": runtime.posture,
        "event_log_position": ductile.events.head,
    }
    if degraded:
        body["degraded"] = degraded
    return body


@get("/")
async def root(runtime: Runtime) -> dict[str, Any]:
    return {
        "name": "Ductile Gateway",
        "description": "Self-hosted automation gateway: durable jobs, schedules, pipelines and plugins.",
        "version": __version__,
        "uptime_seconds": runtime.uptime_seconds(),
        "discovery": {"health": "/healthz", "skills": "/skills", "plugins": "/plugins", "openapi": "/openapi.json",
                      "ai_plugin": "/.well-known/ai-plugin.json"},
    }
