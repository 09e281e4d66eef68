"""The ``text/event-stream`` grammar as api.md §5 frames it (WHATWG HTML "server-sent events"):
lines in, one ``SseFrame`` per blank line out. A line starting ``:`` is a comment (our
keep-alives); ``data`` lines join with newlines. The one reader of the stream's syntax for the
CLI's ``ductile api /events`` and for ``system watch``; each decides what a frame's data means.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec


class SseFrame(msgspec.Struct, frozen=True):
    id: str | None  # as sent (possibly empty); None when the frame had no ``id`` line
    event: str | None  # None when the frame had no ``event`` line ("message" by the standard)
    data: str | None  # the ``data`` lines joined; None when there were none


class SseLines:
    """Incremental: feed it lines as they arrive; a frame is complete at its blank line."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._id: str | None = None
        self._event: str | None = None
        self._data: list[str] = []
        self._seen = False

    def feed(self, lines: Iterable[str]) -> Iterator[SseFrame]:
        for line in lines:
            if line == "":
                if self._seen:
                    yield SseFrame(self._id, self._event, "\n".join(self._data) if self._data else None)
                self._reset()
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                self._id = value
            elif field == "event":
                self._event = value
            elif field == "data":
                self._data.append(value)
            else:
                continue  # an unknown field is ignored, as the standard says
            self._seen = True
