"""Serve the API with uvicorn on the gateway's own event loop."""

from __future__ import annotations

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
    # The gateway owns signal handling (graceful stop, reload); uvicorn must not install its own.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server
