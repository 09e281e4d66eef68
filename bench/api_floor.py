"""The floor of the API path: the gateway's HTTP stack and request steps, with a write that costs nothing.

Served by ``bench/api.py --floor`` beside the hello-world route and the real gateway, so that one run
splits the gap between them in two: what Litestar's request path costs with the steps we must take
(this app), and what the durable write adds (the gateway less this app).

What it keeps of the gateway: uvicorn with the gateway's own protocol (httptools and api.md §1's
deadlines, ``api/server.py``), the app holder, the access log (a request id per request), the
app's exception handlers, the trigger route declared as ours (``api/handlers.py``) with the same
scope guard over a ``TokenSet``, the body read and checked by ``api/body.py``, a new job id and the
same typed answer. The handler awaits a future that a second thread resolves, in batches, one thread
hop per batch as ``events/log.py``'s writer does, but with no SQL, no event and no commit.

Run alone: ``python bench/api_floor.py --port 8123`` (token ``bench-token``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import queue
import threading
import uuid
from typing import Any

from litestar import Litestar, Request
from litestar.params import FromPath

from ductile.api.app import _EXCEPTION_HANDLERS, access_log
from ductile.api.auth import TokenSet, caller_of, scopes
from ductile.api.body import MAX_BODY, json_object, payload_of
from ductile.api.handlers import post
from ductile.api.holder import AppHolder
from ductile.api.plugins import TRIGGER_SCOPES, TriggerAccepted
from ductile.api.server import make_server
from ductile.vocabulary import JobStatus

TOKEN = "bench-token"


class NoOpWriter:
    """A thread that answers every submission at once: the writer's thread hop without its work."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._run, name="noop-writer", daemon=True).start()

    async def submit(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.put((loop, fut))
        await fut

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # One loop serves the bench, so one hop resolves the whole batch.
            batch[0][0].call_soon_threadsafe(_resolve, [fut for _, fut in batch])


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


@post("/plugin/{plugin:str}/{command:str}", status_code=202, guards=[scopes(*TRIGGER_SCOPES)])
async def trigger(
    request: Request[Any, Any, Any], plugin: FromPath[str], command: FromPath[str]
) -> TriggerAccepted:
    caller_of(request)
    payload_of(await json_object(request))
    job_id = str(uuid.uuid4())
    writer: NoOpWriter = request.app.state.writer
    await writer.submit()
    return TriggerAccepted(job_id=job_id, status=JobStatus.QUEUED, plugin=plugin, command=command)


def create_floor_app() -> Litestar:
    app = Litestar(
        route_handlers=[trigger],
        exception_handlers=_EXCEPTION_HANDLERS,
        openapi_config=None,
        logging_config=None,
        request_max_body_size=MAX_BODY,
        debug=False,
    )
    app.state.tokens = TokenSet([(TOKEN, ["*"])])
    app.state.writer = NoOpWriter()
    return app


async def serve(port: int) -> None:
    server = make_server(AppHolder(access_log(create_floor_app())), "127.0.0.1", port)
    gc.freeze()  # as the gateway does once it has started
    await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
