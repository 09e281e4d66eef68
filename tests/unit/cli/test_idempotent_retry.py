"""The CLI's own retry of a keyed request (issue 19 item 3): ``plugin run --idempotency-key K``
sends ``Idempotency-Key: K``, and when the answer is lost in transit it sends the request again
with the same key (the gateway then answers with the job the first request made). Without a key a
lost answer is reported, never resent: the resend could enqueue the work twice."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from ductile.cli.client import GatewayClient
from ductile.cli.output import CliFailure

ANSWER = {"job_id": "j-1", "status": "queued", "plugin": "p", "command": "poll"}


class DropFirst:
    """A server that reads each request, drops the first connection unanswered, answers the rest."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), b"0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head)
                if len(self.requests) == 1:
                    continue  # the answer is lost
                payload = json.dumps(ANSWER).encode()
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)

    def keys(self) -> list[str]:
        return [line.split(b":", 1)[1].strip().decode() for head in self.requests for line in head.split(b"\r\n")
                if line.lower().startswith(b"idempotency-key:")]


@pytest.fixture
def server() -> Iterator[DropFirst]:
    s = DropFirst()
    yield s
    s.sock.close()


def test_a_lost_answer_is_resent_with_the_same_key(server: DropFirst) -> None:
    answer = GatewayClient(server.url, "tok").request("POST", "/plugin/p/poll", {"payload": {}},
                                                      idempotency_key="order-7")
    assert answer == ANSWER
    assert server.keys() == ["order-7", "order-7"]


def test_without_a_key_a_lost_answer_is_reported_not_resent(server: DropFirst) -> None:
    with pytest.raises(CliFailure, match="cannot reach the gateway"):
        GatewayClient(server.url, "tok").request("POST", "/plugin/p/poll", {"payload": {}})
    assert len(server.requests) == 1 and server.keys() == []
