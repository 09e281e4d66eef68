"""Routes declare their parameters and scopes; Litestar's validation and the guards still answer
with api.md's exact error bodies (§1, §2, §4.3)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from ductile.api.app import create_app
from ductile.api.auth import TokenSet
from ductile.app.facade import Ductile


def _get(path: str, token: str | None = "all") -> httpx.Response:
    asked: list[Any] = []

    async def read(fn: Any) -> Any:
        asked.append(fn)
        return {"jobs": [], "total": 0}

    config = SimpleNamespace(api=SimpleNamespace(max_concurrent_sync=1, allowed_origins=[]),
                             service=SimpleNamespace(max_workers=1))
    events = SimpleNamespace(on_commit=lambda _listener: None, head=0, unwritable=None)
    reads = SimpleNamespace(read=read)
    gateway = Ductile(config, SimpleNamespace(plugins={}, get=lambda _name: None), events, reads)  # type: ignore[arg-type]
    app = create_app(gateway, reads, TokenSet([("all", ["*"]), ("plugins", ["plugin:ro"])]))  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


@pytest.mark.parametrize(("limit", "message"), [
    ("0", "limit must be a positive integer"), ("-1", "limit must be a positive integer"),
    ("abc", "limit must be a positive integer"), ("1.5", "limit must be a positive integer"),
    ("null", "limit must be a positive integer"), ("201", "limit must be <= 200"),
])
def test_a_limit_out_of_its_declared_bounds_gets_the_spec_message(limit: str, message: str) -> None:
    for route in ("/jobs", "/job-logs"):
        resp = _get(f"{route}?limit={limit}")
        assert (resp.status_code, resp.json()) == (400, {"error": message}), route


def test_a_limit_within_its_bounds_is_served() -> None:
    assert _get("/jobs?limit=200").status_code == 200
    assert _get("/jobs?limit=1").status_code == 200


def test_the_scope_guard_answers_401_then_403_with_the_spec_messages() -> None:
    missing = _get("/jobs", token=None)
    assert (missing.status_code, missing.json()) == (401, {"error": "missing or invalid Authorization header"})
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = _get("/jobs", token="nope")
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid token"})
    narrow = _get("/jobs", token="plugins")
    assert (narrow.status_code, narrow.json()) == (403, {"error": "insufficient scope"})


def test_a_refusal_of_the_facade_gets_its_spec_status() -> None:
    resp = _get("/stopwatch/nosuch")
    assert (resp.status_code, resp.json()) == (404, {"error": "plugin not found"})


def test_the_generated_document_is_served_behind_a_token_and_its_router_answers_json() -> None:
    assert _get("/openapi.json", token=None).status_code == 401
    doc = _get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0" and "/events" in doc["paths"]
    stray = _get("/openapi.json/anything")
    assert (stray.status_code, stray.json()) == (404, {"error": "not found"})
