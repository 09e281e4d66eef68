"""Serve the API with uvicorn on the gateway's own event loop, with api.md §1's timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ductile.system.logs import Log

log = Log("api")

_STREAM = b"text/event-stream"
_INVALID_REQUEST = b'{"error":"invalid request"}'
_INVALID_REQUEST_RESPONSE = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(_INVALID_REQUEST), _INVALID_REQUEST))


class HttpTimeouts(msgspec.Struct, frozen=True):
    """api.md §1, in seconds. The defaults are the spec's; tests pass shorter ones."""

    read: float = 10.0  # from a request's first byte (or the connection) until it is fully received
    write: float = 600.0  # from a request's headers until its response is complete; long enough for sync pipelines
    idle: float = 60.0  # keep-alive: between one response and the next request
    shutdown: float = 10.0  # a graceful stop waits this long for requests in flight


# The request line plus headers. llhttp sets no bound of its own: without one, a client could grow a
# request head in memory for the whole read timeout. 64 KiB is far above any real client's.
MAX_REQUEST_HEAD = 64 * 1024
LINGER_SECONDS = 1.0


class RequestHeadTooLarge(Exception):
    """Raised from a parser callback: llhttp stops, and uvicorn answers through ``send_400_response``."""


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus read and write deadlines, and a JSON body on its own 400.

    httptools (llhttp, in C) rather than h11: h11's pure-Python parser was about half the event
    loop's time under load (docs/performance-history.md). uvicorn only times out idle keep-alive
    connections: a client that sends half a request, or never reads its response, would hold a
    connection (and a handler) forever. A deadline that passes closes the transport; uvicorn then
    reports ``http.disconnect`` to the handler and drops what it still sends.
    """

    timeouts: ClassVar[HttpTimeouts] = HttpTimeouts()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._discarding = False  # after a 400: the rest of the connection's input is dropped
        self.app = self._watch_responses(self.app)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never completes its first request counts as a slow read.
        self._read_deadline = self.loop.call_later(self.timeouts.read, self._read_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read()
        self._cancel_write()
        super().connection_lost(exc)

    # llhttp's callbacks, in the order it calls them for one request.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._read_deadline is None:
            # The first byte of the next request on a kept-alive connection: its read deadline starts now.
            self._read_deadline = self.loop.call_later(self.timeouts.read, self._read_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_REQUEST_HEAD:
            raise RequestHeadTooLarge(f"request head over {MAX_REQUEST_HEAD} bytes")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # From a request's headers until its response is complete (a pipelined request's starts
        # here too, replacing the one before, as it did with h11).
        self._cancel_write()
        self._write_deadline = self.loop.call_later(self.timeouts.write, self._write_timed_out)

    def on_message_complete(self) -> None:
        self._cancel_read()  # the request is fully read; the write deadline takes over
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._cancel_write()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """A request llhttp cannot parse (e.g. a raw 0xFF byte in the path, a head over
        ``MAX_REQUEST_HEAD``): api.md §1 wants JSON, not uvicorn's plain text."""
        self.transport.write(_INVALID_REQUEST_RESPONSE)
        self._linger()

    def _linger(self) -> None:
        """Half-close, then drop what the client still sends for a moment before closing: a close
        with unread input makes the kernel send a reset, which destroys the 400 before the client
        has read it (RFC 9112 §9.6, "lingering close")."""
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._discarding:
            super().data_received(data)

    def _watch_responses(self, app: Any) -> Any:
        async def watched(scope: Any, receive: Any, send: Any) -> None:
            async def watched_send(message: Any) -> None:
                if message["type"] == "http.response.start" and any(
                    k.lower() == b"content-type" and v.startswith(_STREAM) for k, v in message.get("headers", [])
                ):
                    # An SSE stream never completes. Its slow readers are cut by its own drain rule
                    # (api.md §5), not by a deadline that would end every stream after 10 minutes.
                    self._cancel_write()
                await send(message)

            await app(scope, receive, watched_send)

        return watched

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            log.info("http read timeout", client=_addr(self.client), timeout_s=self.timeouts.read)
            self.transport.close()

    def _write_timed_out(self) -> None:
        self._write_deadline = None
        if not self.transport.is_closing():
            log.info("http write timeout", client=_addr(self.client), timeout_s=self.timeouts.write,
                     path=self.scope.get("path") if self.scope else None)
            self.transport.close()

    def _cancel_read(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _cancel_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None


def _addr(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def make_server(app: Litestar | Any, host: str, port: int, timeouts: HttpTimeouts | None = None,
                protocol: type[GatewayHttpProtocol] = GatewayHttpProtocol) -> uvicorn.Server:
    """``protocol`` is GatewayHttpProtocol or a subclass (the webhook listener answers its own 400)."""
    timeouts = timeouts or HttpTimeouts()
    timed = type(protocol.__name__, (protocol,), {"timeouts": timeouts})
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off", http=timed,
        timeout_keep_alive=int(timeouts.idle), timeout_graceful_shutdown=int(timeouts.shutdown), server_header=False,
    )
    server = uvicorn.Server(config)
    # The gateway owns signal handling (graceful stop, second-signal skip, reload). uvicorn's
    # serve() would otherwise capture SIGINT/SIGTERM and re-raise them when it exits, so one
    # signal would reach the gateway twice.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    return server


# --- the management socket (vault.md §7) ---------------------------------------------------------


class ManagementSocketRefused(Exception):
    """The management socket's path cannot be used safely; boot stops with this text."""


# What this platform's sockaddr_un holds, less the terminating NUL. A path written in the config is
# held to the portable 103 bytes at load (config.md §4.3); the default one, under the state dir, is
# only refused where the kernel itself would refuse it.
UNIX_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


def bind_management_socket(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600, in a directory only its owner may write.

    The parent is created 0700; an existing one that group or others may write without the sticky
    bit is refused (anyone could swap the socket). An existing non-socket file is never replaced;
    a socket nobody listens on (a crashed gateway's) is; one with a listener is refused.
    """
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ManagementSocketRefused(f"management socket path {path} is {len(os.fsencode(path))} bytes, more than "
                                      f"a unix socket allows ({UNIX_PATH_MAX}); set api.management_socket to a "
                                      "shorter path")
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
        parent.chmod(0o700)  # mkdir's mode is filtered by the umask
    mode = parent.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise ManagementSocketRefused(f"management socket directory {parent} is group/other-writable without the "
                                      "sticky bit")
    if path.is_symlink() or path.exists():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ManagementSocketRefused(f"management socket {path} exists and is not a socket; refusing to "
                                          "replace it")
        if _listening(path):
            raise ManagementSocketRefused(f"management socket {path} is in use by another process")
        path.unlink()  # stale: its gateway is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The 0700 parent keeps others out until the chmod below narrows the socket itself.
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    finally:
        probe.close()
    return True


def make_socket_server(app: Litestar | Any, timeouts: HttpTimeouts | None = None) -> uvicorn.Server:
    """A uvicorn server for sockets handed to ``serve(sockets=[...])``, with the API's timeouts."""
    return make_server(app, "127.0.0.1", 0, timeouts)
