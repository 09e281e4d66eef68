"""One follower of the event log per process, fanning SSE frames out to every subscriber.

Each logged event is read from the log and encoded once, however many clients watch, and the
encoded bytes are shared. A subscriber gets a ``Mailbox`` with a byte budget, and the feed never
waits for it. A subscriber that falls further behind than its budget loses what its mailbox held
and reads the log itself, page by page, from the last frame it sent, at the pace its socket
drains (api.md §5: each subscriber reads the log at its own pace, so a slow client never blocks
or slows the gateway).

Gap-free hand-over: a mailbox is armed *before* the subscriber reads the log, so every event
is either in what that read returns (committed before it) or offered to the mailbox (followed
after). The subscriber drops what it already sent by comparing frame ids.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from ductile.events.log import EventLog, fetch_rows
from ductile.events.record import SELECT_COLUMNS, Recorded, from_row
from ductile.runtime.observations import (
    LAST_INDEX,
    Frame,
    FrameId,
    LiveHub,
    WireFrame,
    encode_frame,
    frames,
)
from ductile.system.logs import Log

if TYPE_CHECKING:
    import aiosqlite

MAILBOX_BYTES = 1024 * 1024
PAGE_BYTES = 1024 * 1024
PAGE_ROWS = 500
BACKLOG_FRAMES = 100
log = Log("api")

Types = frozenset[str] | None


def wire_frames(rec: Recorded, types: Types = None) -> list[WireFrame]:
    """The frames of one logged event (ids ``N``, ``N.1`` …), only those of ``types`` encoded."""
    return [
        encode_frame(FrameId(rec.position, i), type_, payload)
        for i, (type_, payload) in enumerate(frames(rec))
        if types is None or type_ in types
    ]


class Page(msgspec.Struct, frozen=True, gc=False):
    """Frames read from the log after a cursor; ``cursor`` is where the next page starts."""

    frames: list[WireFrame]
    cursor: FrameId
    complete: bool  # the read reached the head of the log


async def frames_after(
    conn: aiosqlite.Connection, cursor: FrameId, types: Types = None, max_rows: int = PAGE_ROWS,
    max_bytes: int = PAGE_BYTES,
) -> Page:
    """The logged frames with an id after ``cursor``, in order: at most ``max_rows`` events and
    about ``max_bytes`` of frames (always whole events, so one huge event still fits)."""
    out: list[WireFrame] = []
    size = rows = 0
    last = cursor
    # A cursor inside position N (``N`` or ``N.k``) still owes N's later extra frames.
    first = cursor.position + 1 if cursor.index == LAST_INDEX else cursor.position
    for row in await conn.execute_fetchall(
        f"SELECT {SELECT_COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?", (first, max_rows)
    ):
        rows += 1
        rec = from_row(row)
        for frame in wire_frames(rec, types):
            if frame.id is not None and frame.id > cursor:
                out.append(frame)
                size += len(frame.wire)
        last = max(last, FrameId(rec.position, LAST_INDEX))
        if size >= max_bytes:
            return Page(out, last, complete=False)
    return Page(out, last, complete=rows < max_rows)


async def backlog(conn: aiosqlite.Connection, head: int, types: Types = None) -> list[WireFrame]:
    """The last 100 logged frames up to ``head`` (what a client without an id starts with)."""
    window = 400
    start = max(0, head - window)
    while True:
        collected: list[tuple[FrameId, Frame]] = []
        for rec in await fetch_rows(conn, start):
            if rec.position > head:
                break
            collected += [(FrameId(rec.position, i), frame) for i, frame in enumerate(frames(rec))
                          if types is None or frame[0] in types]
        if len(collected) >= BACKLOG_FRAMES or start == 0:
            return [encode_frame(fid, type_, payload) for fid, (type_, payload) in collected[-BACKLOG_FRAMES:]]
        start = max(0, start - window * 4)


class Mailbox:
    """What the feed hands one subscriber: frames up to a byte budget, never a wait."""

    def __init__(self, types: Types, budget: int = MAILBOX_BYTES) -> None:
        self.types = types
        self.budget = budget
        self.overflowed = False
        self.closed = False
        self._frames: deque[WireFrame] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()

    def offer(self, frame: WireFrame) -> None:
        if self.overflowed or self.closed or (self.types is not None and frame.type not in self.types):
            return
        size = len(frame.wire)
        if self._frames and self._bytes + size > self.budget:
            if frame.id is None:
                return  # live frames are best effort
            # Behind by more than the budget: free the memory; the subscriber reads the log.
            self.overflowed = True
            self._frames.clear()
            self._bytes = 0
        else:
            self._frames.append(frame)
            self._bytes += size
        self._ready.set()

    def take(self) -> list[WireFrame]:
        out = list(self._frames)
        self._frames.clear()
        self._bytes = 0
        self._ready.clear()
        return out

    def rearm(self) -> None:
        """Accept frames again; call just *before* reading the log from the last frame sent."""
        self.overflowed = False
        self.take()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def wait(self) -> None:
        await self._ready.wait()


class EventFeed:
    """Follows the log once for every SSE subscriber of this process (started on first use)."""

    def __init__(self, events: EventLog, live: LiveHub) -> None:
        self._events = events
        self._mailboxes: set[Mailbox] = set()
        self._task: asyncio.Task[None] | None = None
        self._live_hub = live
        self._unsubscribe_live: Callable[[], None] | None = None

    @property
    def count(self) -> int:
        return len(self._mailboxes)

    def subscribe(self, types: Types) -> Mailbox:
        mailbox = Mailbox(types)
        self._mailboxes.add(mailbox)
        if self._unsubscribe_live is None:
            self._unsubscribe_live = self._live_hub.subscribe(self._live)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(self._events.head), name="sse-feed")
        return mailbox

    def unsubscribe(self, mailbox: Mailbox) -> None:
        self._mailboxes.discard(mailbox)
        if not self._mailboxes and self._unsubscribe_live is not None:
            # Publishers (worker threads) then skip the hop to the loop altogether.
            self._unsubscribe_live()
            self._unsubscribe_live = None

    def _live(self, frame: Frame) -> None:
        if not self._mailboxes:
            return
        wire = encode_frame(None, *frame)
        for mailbox in list(self._mailboxes):
            mailbox.offer(wire)

    async def _follow(self, position: int) -> None:
        try:
            async for rec in self._events.follow(position):
                if not self._mailboxes:
                    continue
                encoded = wire_frames(rec)
                for mailbox in list(self._mailboxes):
                    for frame in encoded:
                        mailbox.offer(frame)
        except Exception as exc:
            # The streams end and their clients resume with Last-Event-ID; the next subscriber
            # starts a new follower.
            log.error("sse feed stopped following the event log", exc=exc)
            for mailbox in list(self._mailboxes):
                mailbox.close()

    async def close(self) -> None:
        for mailbox in list(self._mailboxes):
            mailbox.close()
        if self._task is not None:
            self._task.cancel()
            # asyncio.wait, not ``await task``: our own cancellation must still propagate.
            await asyncio.wait([self._task], timeout=5)
