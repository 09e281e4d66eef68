"""The webhook listener's own HTTP rules (webhooks.md §1-§2) against real sockets: its timeouts,
and the bare 400 for a request the HTTP server cannot parse.

The server is the gateway's (``webhook_server``) around the real ``WebhookApp``, with a short read
timeout (the ``HttpTimeouts`` seam) so a stalled client is cut in half a second instead of ten. The
app's facade is a stand-in that knows one secret and hands out job ids: what is under test here is
the listener, not the enqueue (tests/integration/test_webhooks.py runs the real one).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest

from ductile.api.server import HttpTimeouts
from ductile.api.webhooks import BARE_400, TIMEOUTS, EndpointTable, WebhookApp, webhook_server
from ductile.app.webhooks import ReplayGuard, WebhookOutcome
from ductile.config.model import WebhookEndpoint, WebhooksConfig
from ductile.webhook_signatures import sign
from tests.integration.daemon import free_port, wait_until

READ = 0.5
SECRET = "listener-secret"
ENDPOINT = WebhookEndpoint(name="/h", path="/h", plugin="p", secret_ref="k", signature_header="X-Sig")


class StandInWebhooks:
    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []

    def secret(self, name: str) -> str:
        return SECRET if name == "k" else ""

    async def accept(self, endpoint: WebhookEndpoint, body: dict[str, Any], guard: ReplayGuard | None) -> WebhookOutcome:
        self.accepted.append(body)
        return WebhookOutcome(job_id=f"job-{len(self.accepted)}")


class StandInFacade:
    def __init__(self) -> None:
        self.webhooks = StandInWebhooks()


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, StandInFacade]]:
    facade = StandInFacade()
    port = free_port()
    app = WebhookApp(cast(Any, facade), EndpointTable(WebhooksConfig(listen=f"127.0.0.1:{port}", endpoints=[ENDPOINT])))
    server = webhook_server(app, "127.0.0.1", port, HttpTimeouts(read=READ, write=2.0, idle=5.0))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, what="the listener")
    yield port, facade
    server.should_exit = True
    thread.join(10)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_the_listener_timeouts_are_the_spec_ones() -> None:
    assert (TIMEOUTS.read, TIMEOUTS.write, TIMEOUTS.idle) == (10.0, 10.0, 60.0)


def test_a_client_stalling_mid_body_is_cut_while_another_is_served(listener: tuple[int, StandInFacade]) -> None:
    port, facade = listener
    body = b'{"ref":"main"}'
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"POST /h HTTP/1.1\r\nHost: x\r\nX-Sig: " + sign(SECRET, body).encode()
                        + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5])
        served = httpx.post(f"http://127.0.0.1:{port}/h", content=body, headers={"X-Sig": sign(SECRET, body)},
                            timeout=READ / 2)  # answered well before the stalled client's deadline
        data = read_until_closed(stalled)
    cut_after = time.monotonic() - started
    assert (served.status_code, list(served.json())) == (202, ["job_id"])
    assert READ * 0.8 <= cut_after < READ + 2, cut_after
    assert data == b""  # the connection was closed under it: nothing more is said to a stalled client
    assert facade.webhooks.accepted == [{"ref": "main"}]


def test_a_request_the_http_server_cannot_parse_gets_a_bare_400(listener: tuple[int, StandInFacade]) -> None:
    port, _ = listener
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /h\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until_closed(sock)
    assert data == BARE_400 == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
