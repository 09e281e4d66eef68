"""What ``system watch`` reads from the gateway: the SSE stream ``/events`` and the read API
(cli.md §3), over httpx. No textual here, so the parser and the client are unit-tested alone.

Every failure a user can cause (gateway down, a 401/403, a malformed frame) becomes a typed
``FeedError`` or is skipped with a reason; the app shows it and never crashes on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Protocol

import httpx
import msgspec

from ductile.formats.sse import SseFrame, SseLines
from ductile.tui.model import Frame

# The scope a panel needs, named in its `insufficient scope (<scope> needed)` line (cli.md §3).
SCOPES = {"/scheduler/jobs": "jobs:status:ro", "/skills": "plugin:ro", "/job/": "jobs:tree:ro",
          "/jobs": "jobs:status:ro", "/analytics/": "jobs:status:ro", "/events": "events:ro"}
RUNNING_JOBS = "/jobs?status=running&limit=200"  # api.md §3: 200 is the most /jobs lists
_decode = msgspec.json.Decoder()


class FeedError(Exception):
    """The gateway could not be reached, or answered with an error."""


class ScopeMissing(FeedError):
    def __init__(self, scope: str) -> None:
        super().__init__(f"insufficient scope ({scope} needed)")
        self.scope = scope


class SseParser:
    """The stream's frames as the dashboard reads them (api.md §5): a frame whose data is not a
    JSON object is dropped and counted; comments (keep-alives) never reach here."""

    def __init__(self) -> None:
        self._lines = SseLines()
        self.malformed = 0  # frames dropped because their data was not a JSON object

    def feed(self, lines: Iterable[str]) -> Iterator[Frame]:
        for raw in self._lines.feed(lines):
            frame = self._frame(raw)
            if frame is not None:
                yield frame

    def _frame(self, raw: SseFrame) -> Frame | None:
        if not raw.data:
            return None
        try:
            body = _decode.decode(raw.data)
        except msgspec.DecodeError:
            self.malformed += 1
            return None
        if not isinstance(body, dict):
            self.malformed += 1
            return None
        return Frame(type=raw.event or "message", data=body, id=raw.id or None)


class Feed(Protocol):
    """What the app needs from the gateway; tests hand the app a fake one."""

    api_url: str

    def events(self, last_event_id: str | None) -> AsyncIterator[Frame]: ...
    async def health(self) -> dict[str, Any]: ...
    async def schedules(self) -> list[dict[str, Any]]: ...
    async def skills(self) -> list[dict[str, Any]]: ...
    async def job_tree(self, job_id: str) -> list[dict[str, Any]]: ...
    async def running_jobs(self) -> list[dict[str, Any]]: ...
    async def queue(self) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


class HttpFeed:
    """The real feed: one httpx client for the read API and the stream."""

    def __init__(self, api_url: str, api_key: str | None, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str) -> Any:
        try:
            resp = await self._client.get(path)
        except httpx.HTTPError as exc:
            raise FeedError(f"cannot reach the gateway at {self.api_url}: {exc}") from None
        _check(path, resp.status_code, resp)
        try:
            return resp.json()
        except ValueError:
            raise FeedError(f"GET {path}: the gateway answered with malformed JSON") from None

    async def health(self) -> dict[str, Any]:
        body = await self._get("/healthz")
        return body if isinstance(body, dict) else {}

    async def schedules(self) -> list[dict[str, Any]]:
        body = await self._get("/scheduler/jobs")
        return [j for j in (body or {}).get("jobs", []) if isinstance(j, dict)]

    async def skills(self) -> list[dict[str, Any]]:
        body = await self._get("/skills")
        return [s for s in (body or {}).get("skills", []) if isinstance(s, dict)]

    async def job_tree(self, job_id: str) -> list[dict[str, Any]]:
        body = await self._get(f"/job/{job_id}/tree")
        return [n for n in body if isinstance(n, dict)] if isinstance(body, list) else []

    async def running_jobs(self) -> list[dict[str, Any]]:
        body = await self._get(RUNNING_JOBS)
        return [j for j in (body or {}).get("jobs", []) if isinstance(j, dict)]

    async def queue(self) -> dict[str, Any]:
        body = await self._get("/analytics/queue")
        return body if isinstance(body, dict) else {}

    async def events(self, last_event_id: str | None) -> AsyncIterator[Frame]:
        """The stream from after ``last_event_id`` (or the last 100 logged frames); ends when the
        connection drops, raising ``FeedError`` when it could not be opened."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        parser = SseParser()
        try:
            # No read timeout: keep-alives arrive every 15 s, and a dead peer ends the stream.
            async with self._client.stream("GET", "/events", headers=headers,
                                           timeout=httpx.Timeout(10.0, read=None)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _check("/events", resp.status_code, resp)
                async for line in resp.aiter_lines():
                    for frame in parser.feed([line]):
                        yield frame
        except httpx.HTTPError as exc:
            raise FeedError(f"stream from {self.api_url} ended: {exc}") from None


def _check(path: str, status: int, resp: httpx.Response) -> None:
    if status < 400:
        return
    if status == 403:
        scope = next((s for prefix, s in SCOPES.items() if path.startswith(prefix)), "?")
        raise ScopeMissing(scope)
    try:
        body = resp.json()
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        error = None
    raise FeedError(f"GET {path} failed ({status}): {error or resp.reason_phrase}")
