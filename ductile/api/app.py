"""The Litestar application: routes per concern, JSON errors everywhere, access logging."""

from __future__ import annotations

import asyncio
import os
import time
from random import getrandbits
from typing import Any

from litestar import Litestar, MediaType, Request, Response, Router
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ductile import __version__
from ductile.api import (
    analytics,
    catalog,
    events_stream,
    health,
    jobs,
    metrics_route,
    pipelines,
    plugins,
    scheduler,
    system,
)
from ductile.api.auth import TokenSet
from ductile.api.body import MAX_BODY
from ductile.api.context import DEPENDENCIES
from ductile.api.cors import Cors
from ductile.api.errors import ApiError
from ductile.api.jobs import MAX_LIMIT
from ductile.api.schemas import SECURED, describe_asgi_routes, openapi_config
from ductile.api.vault import vault_router
from ductile.app.facade import CommandNotSupported, Ductile, PipelineNotFound, PluginNotFound
from ductile.projections.job_queries import QueryError
from ductile.runtime.metrics import Metrics
from ductile.runtime.services import Services
from ductile.system.logs import Log, request_context

log = Log("api")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
    return Response({"error": message}, status_code=status, headers=headers, media_type=MediaType.JSON)


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, str]]:
    return _error(exc.status, exc.message, exc.headers)


def _domain_error(_: Request[Any, Any, Any], exc: LookupError | QueryError) -> Response[dict[str, str]]:
    """A refusal of the facade, with the status api.md gives it (the message is the error's text)."""
    status = 400 if isinstance(exc, QueryError | CommandNotSupported) else 404
    return _error(status, str(exc))


def _invalid_parameter(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, str]]:
    """Litestar's own parameter validation, answered with api.md's texts rather than its own."""
    keys = {e.get("key") for e in exc.extra or () if isinstance(e, dict)} if isinstance(exc.extra, list) else set()
    if "limit" in keys:
        raw = request.query_params.get("limit", "")
        too_big = raw.isdigit() and int(raw) > MAX_LIMIT
        return _error(400, f"limit must be <= {MAX_LIMIT}" if too_big else "limit must be a positive integer")
    return _error(400, "invalid request")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    if isinstance(exc, ValidationException):
        return _invalid_parameter(request, exc)
    if isinstance(exc, NotFoundException):
        return _error(404, "not found")
    if isinstance(exc, MethodNotAllowedException):
        return _error(405, "method not allowed", dict(exc.headers or {}))
    if exc.status_code == 413:
        return _error(413, "request body too large")
    if exc.status_code >= 500:
        log.error("HTTP server error", exc=exc, method=request.method, path=request.url.path)
        return _error(500, "internal error")
    if exc.status_code == 400:
        return _error(400, "invalid request")
    return _error(exc.status_code, str(exc.detail or "error"))


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    # The one log line of a fault no handler expected: type, message, traceback and request id.
    log.error("unhandled API error", exc=exc, method=request.method, path=request.url.path)
    return _error(500, "internal error")


def access_log(app: ASGIApp) -> ASGIApp:
    """Echo or assign ``X-Request-ID`` and log one ``http request`` line per request; every line
    logged while the request is served carries the same ``request_id``."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for k, v in scope.get("headers", []):
            if k == b"x-request-id":
                request_id = v.decode("latin-1")[:128]
        # 32 hex digits, as a uuid4's: unique is all a request id must be, and this takes no
        # system call (uuid4 reads os.urandom) and builds no UUID object.
        request_id = request_id or f"{getrandbits(128):032x}"
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        with request_context(request_id):
            try:
                await app(scope, receive, send_wrapper)
            finally:
                log.info("http request", method=scope.get("method"), path=scope.get("path"), status=status,
                         duration_ms=int((time.perf_counter() - started) * 1000), request_id=request_id)

    return middleware


_EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error, PluginNotFound: _domain_error, CommandNotSupported: _domain_error,
    PipelineNotFound: _domain_error, QueryError: _domain_error, HTTPException: _http_error, Exception: _internal}


def create_management_app(ductile: Ductile, services: Services) -> Litestar:
    """The management socket's app (vault.md §7): ``/vault/*`` and ``/healthz`` only, whatever
    the API's posture; the admin token is its only credential. ``system status`` asks this
    ``/healthz`` first (operations.md §4), so it answers even when the public API is off."""
    app = Litestar(route_handlers=[health.healthz, vault_router()], dependencies=DEPENDENCIES, exception_handlers=_EXCEPTION_HANDLERS,
                   openapi_config=None, logging_config=None, request_max_body_size=MAX_BODY, debug=False)
    app.state.ductile = ductile
    app.state.services = services
    return app


def create_app(ductile: Ductile, services: Services, tokens: TokenSet, metrics: Metrics | None = None) -> Litestar:
    """The API over ``ductile`` (the use cases) and ``services`` (the running process's live state:
    the SSE feed, uptime, the stop flag), both given to handlers by dependency injection."""
    # Every route but the two open ones (api.md §2) needs a token, and the document says so.
    secured = Router("/", security=SECURED, route_handlers=[
            plugins.list_plugins, plugins.trigger, *plugins.command_routes(ductile.catalog),
            jobs.get_job, jobs.list_jobs, jobs.job_logs, jobs.job_tree,
            scheduler.scheduler_jobs, scheduler.reset_breaker,
            events_stream.events_stream,
            catalog.get_plugin, catalog.plugin_openapi, catalog.skills, catalog.ai_plugin,
            analytics.analytics_summary, analytics.analytics_queue, analytics.stopwatch,
            system.get_topology, system.get_config_view, system.system_doctor, system.system_selfcheck,
            system.system_reload,
            metrics_route.metrics, pipelines.trigger_pipeline, *pipelines.pipeline_routes(ductile.pipelines.names()),
    ])
    app = Litestar(
        route_handlers=[health.healthz, health.root, secured, vault_router()],
        dependencies=DEPENDENCIES,
        exception_handlers=_EXCEPTION_HANDLERS,
        openapi_config=openapi_config(),
        logging_config=None,
        # Litestar's own default (10,000,000 bytes) would fire before api.md's 10 MiB.
        request_max_body_size=MAX_BODY,
        debug=False,
    )
    describe_asgi_routes(app.openapi_schema)
    app.state.ductile = ductile
    app.state.services = services
    app.state.sync_slots = asyncio.Semaphore(ductile.config.api.max_concurrent_sync)
    app.state.tokens = tokens
    if metrics is None:
        # Standalone (no registry handed in by the gateway): count from this app's own listener.
        metrics = Metrics(ductile.config.service.max_workers, __version__,
                          os.environ.get("DUCTILE_COMMIT", "unknown"))
        ductile.events.on_commit(metrics.observe)
    app.state.metrics = metrics
    if ductile.config.api.allowed_origins:
        # Around the whole app, like Litestar's own CORS: unknown routes and preflights included.
        app.asgi_handler = Cors(app.asgi_handler, ductile.config.api.allowed_origins)
    return app
