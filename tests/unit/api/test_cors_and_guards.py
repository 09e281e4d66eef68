"""CORS headers (api.md §1), the selfcheck single-flight guard, and pipeline entry steps (§4.7)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from litestar import Litestar

from ductile.api import system
from ductile.api.app import _api_error
from ductile.api.auth import TokenSet
from ductile.api.context import DEPENDENCIES
from ductile.api.cors import Cors
from ductile.api.errors import ApiError
from ductile.app.facade import Ductile
from ductile.events.sqlite_store import SqliteStore


async def _run(app: Any, method: str, headers: dict[str, str]) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/x",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


class Inner:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"vary", b"Accept-Encoding")]})
        await send({"type": "http.response.body", "body": b"{}"})


def test_an_exact_origin_is_echoed_with_credentials_and_vary_is_extended() -> None:
    inner = Inner()
    status, headers = asyncio.run(_run(Cors(inner, ["https://a.example"]), "GET", {"Origin": "https://a.example"}))
    assert status == 200 and inner.calls == 1
    assert headers[b"access-control-allow-origin"] == b"https://a.example"
    assert headers[b"access-control-allow-credentials"] == b"true"
    assert headers[b"access-control-expose-headers"] == b"Link"
    assert headers[b"vary"] == b"Accept-Encoding, Origin"


def test_a_preflight_is_answered_without_reaching_the_app() -> None:
    inner = Inner()
    cors = Cors(inner, ["https://a.example"])
    status, headers = asyncio.run(_run(cors, "OPTIONS", {"Origin": "https://a.example",
                                                             "Access-Control-Request-Method": "PUT"}))
    assert status == 204 and inner.calls == 0
    assert headers[b"access-control-allow-methods"] == b"GET, POST, PUT, DELETE, OPTIONS"
    assert headers[b"access-control-allow-headers"] == b"Accept, Authorization, Content-Type, X-CSRF-Token"
    assert headers[b"access-control-max-age"] == b"300"
    # OPTIONS without Access-Control-Request-Method is an ordinary request.
    status, _ = asyncio.run(_run(cors, "OPTIONS", {"Origin": "https://a.example"}))
    assert status == 200 and inner.calls == 1


def test_wildcard_and_unlisted_origins() -> None:
    inner = Inner()
    _, headers = asyncio.run(_run(Cors(inner, ["https://a.example", "*"]), "GET", {"Origin": "https://b.example"}))
    assert headers[b"access-control-allow-origin"] == b"*"
    assert b"access-control-allow-credentials" not in headers
    _, exact = asyncio.run(_run(Cors(inner, ["https://a.example", "*"]), "GET", {"Origin": "https://a.example"}))
    assert exact[b"access-control-allow-credentials"] == b"true"
    for origin_headers in ({"Origin": "https://b.example"}, {}):
        status, headers = asyncio.run(_run(Cors(inner, ["https://a.example"]), "OPTIONS",
                                              {**origin_headers, "Access-Control-Request-Method": "GET"}))
        assert status == 200
        assert not [k for k in headers if k.startswith(b"access-control-")]
        assert headers[b"vary"] == b"Accept-Encoding"


def test_a_second_selfcheck_while_one_runs_is_409() -> None:
    entered, release = threading.Event(), threading.Event()

    def reader() -> sqlite3.Connection:
        entered.set()
        release.wait(10)
        raise sqlite3.OperationalError("unable to open database file")

    app = Litestar(route_handlers=[system.system_selfcheck], exception_handlers={ApiError: _api_error},
                   dependencies=DEPENDENCIES)
    events = SimpleNamespace(reader=reader, store=SqliteStore(Path("never-opened.db")))
    app.state.ductile = Ductile(None, None, events, None)  # type: ignore[arg-type]
    app.state.tokens = TokenSet([("t", ["system:ro"])])
    auth = {"Authorization": "Bearer t"}

    async def scenario() -> None:
        # httpx's ASGI transport runs both requests as tasks of this loop, truly concurrently.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            first = asyncio.create_task(client.get("/system/selfcheck", headers=auth))
            assert await asyncio.to_thread(entered.wait, 10)
            second = await client.get("/system/selfcheck", headers=auth)
            assert second.status_code == 409
            assert second.json() == {"error": "selfcheck already running"}
            release.set()
            done = await first
            assert done.status_code == 200
            body = done.json()
            assert body["healthy"] is False
            assert [(c["name"], c["status"]) for c in body["checks"]] == [
                ("event_log_chain", "skipped"), ("projection_replay", "skipped"),
                ("queue_terminal_freshness", "skipped"), ("vault_agreement", "skipped")]
            assert (await client.get("/system/selfcheck", headers=auth)).status_code == 200  # the guard is released

    asyncio.run(scenario())


def test_pipeline_entry_plugins_follow_nesting_split_and_call() -> None:
    pipelines = {
        "a": {"name": "a", "steps": [{"uses": "first"}, {"uses": "second"}]},
        "b": {"name": "b", "steps": [{"split": [{"uses": "x.handle"}, {"steps": [{"call": "a"}]}, {"relay": {}}]}]},
        "loop": {"name": "loop", "steps": [{"call": "loop"}]},
        "empty": {"name": "empty", "steps": []},
    }
    entry = system.pipeline_entry_plugins
    assert entry(pipelines["a"], pipelines) == ["first"]
    assert entry(pipelines["b"], pipelines) == ["x", "first"]
    assert entry(pipelines["loop"], pipelines) == []
    assert entry(pipelines["empty"], pipelines) == []
