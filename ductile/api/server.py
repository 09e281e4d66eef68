"""Serve the API with uvicorn on the gateway's own event loop."""

from __future__ import annotations

import contextlib

import uvicorn
from litestar import Litestar


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def make_server(app: Litestar, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
        timeout_keep_alive=60, timeout_graceful_shutdown=10, server_header=False,
    )
    server = uvicorn.Server(config)
    # The gateway owns signal handling (graceful stop, second-signal skip, reload). uvicorn's
    # serve() would otherwise capture SIGINT/SIGTERM and re-raise them when it exits, so one
    # signal would reach the gateway twice.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    return server
