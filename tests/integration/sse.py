"""A minimal SSE reader for tests: a background thread parses frames into a list."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import httpx
import msgspec


class SseReader:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self.comments = 0
        self.status: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(30, read=None)) as client, client.stream("GET", url, headers=headers) as resp:
                self.status = resp.status_code
                frame: dict[str, Any] = {}
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments += 1
                    elif line == "":
                        if frame:
                            self.frames.append(frame)
                        frame = {}
                    elif line.startswith("id: "):
                        frame["id"] = line[4:]
                    elif line.startswith("event: "):
                        frame["event"] = line[7:]
                    elif line.startswith("data: "):
                        frame["data"] = msgspec.json.decode(line[6:])
        except httpx.HTTPError:
            return

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.frames):
                return list(self.frames)
            time.sleep(0.05)
        raise AssertionError(f"SSE condition not met; got {[(f.get('id'), f.get('event')) for f in self.frames]}")

    def close(self) -> None:
        self._stop.set()


def open_raw_stream(port: int, token: str, rcvbuf: int | None = None, last_event_id: str | None = None) -> socket.socket:
    """A raw ``GET /events`` on a socket the caller controls (read it, stall it, or drop it)."""
    sock = socket.socket()
    if rcvbuf is not None:
        # Set before connect: a small window makes the server's sends back up quickly.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode())
    return sock


def read_once_and_close(port: int, token: str, last_event_id: str | None = None) -> None:
    """Connect to ``/events``, read one chunk and close abruptly (RST), as a flaky client does."""
    try:
        sock = open_raw_stream(port, token, last_event_id=last_event_id)
    except OSError:
        return  # the caller checks the gateway is still up
    try:
        sock.recv(4096)
    except OSError:
        pass
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
