"""``GET /events``: the SSE stream of observation events (api.md §5).

Frame ids are event-log positions (``N``, or ``N.k`` for the k-th extra frame of one logged
event), so ``Last-Event-ID`` resumes from the log without loss, even across gateway restarts.
Each subscriber follows the log at its own pace through a bounded queue: a slow client never
slows the gateway, and one whose socket has not drained for 60 s is dropped (it can resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import asgi
from litestar.types import Receive, Scope, Send

from ductile.api.auth import authenticate
from ductile.api.errors import ApiError
from ductile.events.log import read_rows
from ductile.runtime.observations import Frame, frames
from ductile.runtime.services import Services

KEEPALIVE_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 60.0
BACKLOG_FRAMES = 100
QUEUE_SIZE = 1000
_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")
_encoder = msgspec.json.Encoder()
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]


def encode_frame(frame_id: str | None, type_: str, payload: dict[str, Any]) -> bytes:
    head = f"id: {frame_id}\n" if frame_id is not None else ""
    return (head + f"event: {type_}\ndata: ").encode() + _encoder.encode(payload) + b"\n\n"


def parse_last_id(raw: str | None) -> tuple[int, int] | None:
    if raw is None or raw == "":
        return None
    m = _ID.match(raw.strip())
    if not m:
        raise ApiError(400, "invalid Last-Event-ID")
    return int(m.group(1)), int(m.group(2) or 0)


def _frames_of(rec: Any, types: set[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for i, (type_, payload) in enumerate(frames(rec)):
        if types is None or type_ in types:
            out.append((str(rec.position) if i == 0 else f"{rec.position}.{i}", type_, payload))
    return out


def backlog(conn: sqlite3.Connection, head: int, types: set[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    """The last 100 logged frames up to ``head`` (what a client without an id starts with)."""
    collected: list[tuple[str, str, dict[str, Any]]] = []
    window = 400
    start = max(0, head - window)
    while True:
        collected = []
        for rec in read_rows(conn, start):
            if rec.position > head:
                break
            collected += _frames_of(rec, types)
        if len(collected) >= BACKLOG_FRAMES or start == 0:
            return collected[-BACKLOG_FRAMES:]
        start = max(0, start - window * 4)


async def _respond_error(send: Send, exc: ApiError) -> None:
    headers = [(b"content-type", b"application/json")] + [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": _encoder.encode({"error": exc.message})})


@asgi("/events")
async def events_stream(scope: Scope, receive: Receive, send: Send) -> None:
    app = scope["app"]
    svc: Services = app.state.services
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        if scope.get("method", "GET") != "GET":
            raise ApiError(405, "method not allowed", {"Allow": "GET"})
        caller = authenticate(app.state.tokens, headers.get("authorization"),
                              query_token=(query.get("token") or [None])[0], allow_query=True)
        caller.require("events:ro", "events:rw")
        raw_id = headers.get("last-event-id") or (query.get("last_event_id") or [None])[0]
        resume = parse_last_id(raw_id)
    except ApiError as exc:
        await _respond_error(send, exc)
        return
    types_param = (query.get("types") or [""])[0]
    types = {t.strip() for t in types_param.split(",") if t.strip()} or None
    await Subscriber(svc, send, receive, resume, types).run()


class Subscriber:
    def __init__(self, svc: Services, send: Send, receive: Receive, resume: tuple[int, int] | None,
                 types: set[str] | None) -> None:
        self.svc = svc
        self.send = send
        self.receive = receive
        self.resume = resume
        self.types = types
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)

    def _live(self, frame: Frame) -> None:
        type_, payload = frame
        if self.types is not None and type_ not in self.types:
            return
        with contextlib.suppress(asyncio.QueueFull):  # live frames are best effort
            self.queue.put_nowait(encode_frame(None, type_, payload))

    async def _pump(self) -> None:
        """Follow the log into the queue; blocks (only itself) when the client is slow."""
        if self.resume is None:
            head = self.svc.events.head
            for fid, type_, payload in await self.svc.read(lambda c: backlog(c, head, self.types)):
                await self.queue.put(encode_frame(fid, type_, payload))
            position, skip_extra = head, -1
        else:
            position, skip_extra = self.resume
        async for rec in self.svc.events.follow(position if skip_extra <= 0 else position - 1):
            for fid, type_, payload in _frames_of(rec, self.types):
                if rec.position == position and skip_extra > 0 and _extra_index(fid) <= skip_extra:
                    continue
                await self.queue.put(encode_frame(fid, type_, payload))

    async def _disconnected(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return

    async def run(self) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        unsubscribe = self.svc.live.subscribe(self._live)
        self.svc.sse_subscribers += 1
        pump = asyncio.create_task(self._pump())
        gone = asyncio.create_task(self._disconnected())
        stopping = asyncio.create_task(self.svc.stopping.wait())
        try:
            while True:
                getter = asyncio.create_task(self.queue.get())
                done, _ = await asyncio.wait({getter, gone, stopping, pump}, timeout=KEEPALIVE_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    chunk = getter.result()
                else:
                    getter.cancel()
                    if done:
                        break  # client gone, gateway stopping, or the log follower ended
                    chunk = b": keep-alive\n\n"
                try:
                    await asyncio.wait_for(
                        self.send({"type": "http.response.body", "body": chunk, "more_body": True}), SEND_TIMEOUT_SECONDS
                    )
                except (TimeoutError, OSError):
                    break
        finally:
            unsubscribe()
            self.svc.sse_subscribers -= 1
            for task in (pump, gone, stopping):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})


def _extra_index(fid: str) -> int:
    return int(fid.split(".", 1)[1]) if "." in fid else 0
