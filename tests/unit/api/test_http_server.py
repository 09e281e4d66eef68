"""The HTTP server's timeouts and its own error body (api.md §1), against real sockets.

The server is the gateway's (``make_server``) with short timeouts and a tiny ASGI app, so a slow
client is observed in a second instead of ten.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ductile.api.server import HttpTimeouts, make_server
from tests.integration.daemon import free_port, wait_until

READ, WRITE = 0.5, 1.0


async def app(scope: Any, receive: Any, send: Any) -> None:
    """``/sleep/<s>`` answers after s seconds; ``/stream`` sends an event stream for 2 s; else echo the body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await asyncio.sleep(0.4)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path.startswith("/sleep/"):
        await asyncio.sleep(float(path.removeprefix("/sleep/")))
    reply = b"got " + body
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(reply))]})
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    server = make_server(app, "127.0.0.1", port, HttpTimeouts(read=READ, write=WRITE, idle=5))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, what="the server to listen")
    yield port
    server.should_exit = True
    thread.join(10)


def closed_after(sock: socket.socket) -> tuple[bytes, float]:
    """Read until the server closes; return what came and how long it took."""
    started = time.monotonic()
    data = b""
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def one_response(sock: socket.socket) -> bytes:
    """Read one response with a Content-Length; return its body."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return body


def test_the_defaults_are_the_spec_timeouts() -> None:
    assert HttpTimeouts() == HttpTimeouts(read=10, write=600, idle=60, shutdown=10)


@pytest.mark.parametrize("sent", [
    b"",  # connects and says nothing
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le",  # half the headers
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf",  # half the body
])
def test_a_client_that_stalls_mid_request_is_disconnected_after_the_read_timeout(port: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        data, waited = closed_after(sock)
    assert data == b""
    assert READ * 0.8 <= waited < READ + 2, waited


def test_the_read_timeout_starts_again_with_each_request_on_a_kept_alive_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert one_response(sock) == b"got hi"
        time.sleep(READ * 1.5)  # idle between requests is the keep-alive timeout's business, not the read timeout's
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nho")
        assert one_response(sock) == b"got ho"
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
        data, waited = closed_after(sock)
    assert data == b"" and waited < READ + 2, waited


def test_a_handler_slower_than_the_read_timeout_still_answers(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /sleep/%.1f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (READ * 1.6))
        data, _ = closed_after(sock)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"got ")


def test_a_response_not_complete_within_the_write_timeout_is_cut(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /sleep/%.1f HTTP/1.1\r\nHost: x\r\n\r\n" % (WRITE * 3))
        data, waited = closed_after(sock)
    assert data == b""
    assert WRITE * 0.8 <= waited < WRITE * 2.5, waited


def test_an_event_stream_outlives_the_write_timeout(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, waited = closed_after(sock)
    assert waited > WRITE
    assert all(b"data: %d" % i in data for i in range(5)), data


def test_a_request_line_the_parser_refuses_gets_the_json_error_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /job/\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _ = closed_after(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "invalid request"}
