"""``GET /events``: the SSE stream of observation events (api.md §5).

Frame ids are event-log positions (``N``, or ``N.k`` for the k-th extra frame of one logged
event), so ``Last-Event-ID`` resumes from the log without loss, even across gateway restarts.
Frames come from the process's one ``EventFeed`` (read and encoded once for every subscriber);
a subscriber that falls behind its mailbox's byte budget reads the log itself at its own pace,
so a slow client never slows the gateway, and one whose socket has not drained for 60 s is
dropped (it can resume).
"""

from __future__ import annotations

import asyncio
import functools
import re
from urllib.parse import parse_qs

import msgspec
from litestar import asgi
from litestar.types import Receive, Scope, Send

from ductile.api.auth import authenticate, authorization_header
from ductile.api.errors import ApiError
from ductile.events.log import fetch_head
from ductile.runtime.event_feed import Mailbox, Types, backlog, frames_after
from ductile.runtime.observations import LAST_INDEX, FrameId, WireFrame
from ductile.runtime.services import Services
from ductile.system.logs import Log

KEEPALIVE_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 60.0
FINAL_SEND_SECONDS = 1.0
SEND_CHUNK_BYTES = 256 * 1024
COALESCE_SECONDS = 0.05
KEEPALIVE = b": keep-alive\n\n"
_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")
_encoder = msgspec.json.Encoder()
log = Log("api")
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]


def parse_last_id(raw: str | None) -> FrameId | None:
    if raw is None or raw == "":
        return None
    m = _ID.match(raw.strip())
    if not m:
        raise ApiError(400, "invalid Last-Event-ID")
    return FrameId(int(m.group(1)), int(m.group(2) or 0))


async def _respond_error(send: Send, exc: ApiError) -> None:
    headers = [(b"content-type", b"application/json")] + [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": _encoder.encode({"error": exc.message})})


# copy_scope=True (Litestar 3's default): the stream only reads its scope and never means to
# hand a change back to the middleware around it, so it gets its own copy; one shallow dict copy
# per connection costs nothing next to a stream's life.
@asgi("/events", copy_scope=True)
async def events_stream(scope: Scope, receive: Receive, send: Send) -> None:
    app = scope["app"]
    svc: Services = app.state.services
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        if scope.get("method", "GET") != "GET":
            raise ApiError(405, "method not allowed", {"Allow": "GET"})
        caller = authenticate(app.state.tokens, authorization_header(scope.get("headers", [])),
                              query_token=(query.get("token") or [None])[0], allow_query=True)
        caller.require("events:ro", "events:rw")
        raw_id = headers.get("last-event-id") or (query.get("last_event_id") or [None])[0]
        resume = parse_last_id(raw_id)
        # An id the log has not reached (a restored older DB, another gateway's id) would
        # silently hide every event up to it: refuse it rather than stream nothing.
        if resume is not None and resume.position > svc.events.head and resume.position > await svc.read(fetch_head):
            raise ApiError(400, "invalid Last-Event-ID")
    except ApiError as exc:
        await _respond_error(send, exc)
        return
    types_param = (query.get("types") or [""])[0]
    types = frozenset(t.strip() for t in types_param.split(",") if t.strip()) or None
    await Subscriber(svc, send, receive, resume, types).run()


class _StreamEnded(Exception):
    """The client went away, was too slow, or the gateway is stopping."""


class Subscriber:
    def __init__(self, svc: Services, send: Send, receive: Receive, resume: FrameId | None, types: Types) -> None:
        self.svc = svc
        self.send = send
        self.receive = receive
        self.types = types
        self.resume = resume
        # The last frame id sent (or skipped by the filter): nothing at or before it is sent again.
        self.cursor = resume or FrameId(0)
        self._ends: set[asyncio.Future[object]] = set()

    async def _disconnected(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return

    async def run(self) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        mailbox = self.svc.feed.subscribe(self.types)  # armed before any log read: see event_feed
        self.svc.sse_subscribers += 1
        gone = asyncio.create_task(self._disconnected())
        stopping = asyncio.create_task(self.svc.stopping.wait())
        self._ends = {gone, stopping}
        try:
            await self._stream(mailbox)
        except _StreamEnded:
            pass
        finally:
            client_gone = gone.done() and not gone.cancelled()
            self.svc.feed.unsubscribe(mailbox)
            self.svc.sse_subscribers -= 1
            gone.cancel()
            stopping.cancel()
        if not client_gone:
            await self._finish()

    async def _stream(self, mailbox: Mailbox) -> None:
        if self.resume is None:
            head = self.svc.events.head
            await self._send_frames(await self.svc.read(lambda c: backlog(c, head, self.types)))
            self.cursor = FrameId(head, LAST_INDEX)
        catching_up = True
        while True:
            if mailbox.closed:
                raise _StreamEnded("feed closed")
            if catching_up or mailbox.overflowed:
                mailbox.rearm()
                page = await self.svc.read(functools.partial(frames_after, cursor=self.cursor, types=self.types))
                await self._send_frames(page.frames)
                self.cursor = max(self.cursor, page.cursor)
                catching_up = not page.complete
                continue
            pending = mailbox.take()
            if pending:
                await self._send_frames(pending)
                continue
            waiting = asyncio.ensure_future(mailbox.wait())
            try:
                done, _ = await asyncio.wait({waiting, *self._ends}, timeout=KEEPALIVE_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            if self._ends & done:
                raise _StreamEnded("client gone or gateway stopping")
            if not done:
                await self._send(KEEPALIVE)
            else:
                # Gather what the next commits bring and send it as one chunk: each subscriber
                # then wakes at most ~20 times a second however busy the log, so many
                # subscribers do not tax the loop the workers and the API share.
                await asyncio.sleep(COALESCE_SECONDS)

    async def _send_frames(self, frames: list[WireFrame]) -> None:
        chunk: list[bytes] = []
        size = 0
        for frame in frames:
            if frame.id is not None:
                if frame.id <= self.cursor:
                    continue  # already sent (the log read and the feed overlap)
                self.cursor = frame.id
            chunk.append(frame.wire)
            size += len(frame.wire)
            if size >= SEND_CHUNK_BYTES:
                await self._send(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            await self._send(b"".join(chunk))

    async def _send(self, body: bytes) -> None:
        """Send, unless the socket does not drain for 60 s, the client leaves, or we stop."""
        sending = asyncio.ensure_future(self.send({"type": "http.response.body", "body": body, "more_body": True}))
        try:
            done, _ = await asyncio.wait({sending, *self._ends}, timeout=SEND_TIMEOUT_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sending.done():
                sending.cancel()
        if sending in done:
            sending.result()
            return
        if not done:
            log.warn("sse client dropped: socket not drained", seconds=SEND_TIMEOUT_SECONDS)
        raise _StreamEnded("send did not complete")

    async def _finish(self) -> None:
        """End the response; a client that does not drain gets its connection closed instead."""
        closing = asyncio.ensure_future(self.send({"type": "http.response.body", "body": b"", "more_body": False}))
        done, _ = await asyncio.wait({closing}, timeout=FINAL_SEND_SECONDS)
        if closing in done:
            if not closing.cancelled() and closing.exception() is not None:
                log.debug("sse stream could not be closed cleanly", error=repr(closing.exception()))
        else:
            closing.cancel()
