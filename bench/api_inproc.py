"""The API's per-request work without a server: the app called over ASGI in-process.

For counting rather than timing: ``docs/performance-history.md``'s instruction counts per request come from
two runs of this under callgrind, one thread per output file, whose difference is the requests':

    valgrind --tool=callgrind --separate-threads=yes python bench/api_inproc.py --app gateway 100
    valgrind --tool=callgrind --separate-threads=yes python bench/api_inproc.py --app gateway 1100
    # (instructions of thread 1 at 1100 - at 100) / 1000 = the event loop's per request

``--app``: ``gateway`` (the real app with its access log over a real, durable event log, no
dispatcher), ``floor`` (``bench/api_floor.py``) or ``hello`` (``bench/api.py``'s hello-world). 16
requests in flight, like ``bench/api.py``; it also prints the loop thread's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from litestar.types import ASGIApp, Message

from ductile.api.app import access_log, create_app
from ductile.api.auth import TokenSet
from ductile.api.holder import AppHolder
from ductile.app.facade import Ductile
from ductile.config.discovery import ConfigSource
from ductile.config.loader import load_config
from ductile.events.log import EventLog
from ductile.projections.registry import default_runner
from ductile.runtime.catalog import load_catalog
from ductile.runtime.services import Services

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token"
PATH = "/plugin/behave/poll"
BODY = b'{"payload":{"mode":"sleep","seconds":120}}'
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"authorization", f"Bearer {TOKEN}".encode()),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
WARM_UP = 300


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Litestar resolves handler annotations through it
    spec.loader.exec_module(module)
    return module


async def request(app: ASGIApp) -> None:
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:  # the client stays connected for the whole request
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Any = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    if sent[0].get("status") != 202:
        raise RuntimeError(f"unexpected answer: {sent!r}")


async def drive(app: ASGIApp, requests: int, concurrency: int = 16) -> None:
    for _ in range(WARM_UP):
        await request(app)
    gc.collect()
    gc.freeze()  # as the gateway does once it has started
    left = requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await request(app)

    started = time.thread_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    print(
        f"{requests} requests: event loop {(time.thread_time() - started) / requests * 1000:.3f} ms CPU/request"
    )


async def main(kind: str, requests: int) -> None:
    if kind == "hello":
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "hello_app.py").write_text(_module("api").HELLO)
            sys.path.insert(0, tmp)
            hello = importlib.import_module("hello_app")
        await drive(hello.app, requests)
        return
    if kind == "floor":
        await drive(AppHolder(access_log(_module("api_floor").create_floor_app())), requests)
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    "service": {"max_workers": 1, "log_level": "error", "durability": "full"},
                    "state": {"path": "data/ductile.db"},
                    "plugin_roots": [str(BENCH.parent / "tests" / "plugins")],
                    "plugins": {"behave": {"enabled": True}},
                }
            )
        )
        config = load_config(
            ConfigSource(root_file=Path(tmp) / "config.yaml", config_dir=Path(tmp), source="explicit")
        )
        events = await EventLog(config.state_path, "full", default_runner()).open()
        services = Services(events)
        try:
            facade = Ductile(config, load_catalog(config), events, services)
            await drive(
                AppHolder(access_log(create_app(facade, services, TokenSet([(TOKEN, ["*"])])))), requests
            )
        finally:
            await services.close()
            await events.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app", choices=("gateway", "floor", "hello"), default="gateway")
    parser.add_argument("requests", type=int, nargs="?", default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.app, args.requests))
