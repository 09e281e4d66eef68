"""bench/api_floor.py measures the gateway's request path without the write: it is only a floor while
it takes the gateway's steps, so it must refuse and answer as ``POST /plugin/<p>/<c>`` does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from ductile.api.app import access_log

pytestmark = pytest.mark.anyio

FLOOR = Path(__file__).resolve().parents[3] / "bench" / "api_floor.py"


def _floor_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_floor", FLOOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Litestar resolves the handler's annotations through it
    spec.loader.exec_module(module)
    return module


async def test_the_floor_app_guards_reads_the_body_and_answers_like_the_trigger() -> None:
    floor = _floor_module()
    app = access_log(floor.create_floor_app())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://floor") as http:
        url = "/plugin/behave/poll"
        bearer = {"Authorization": f"Bearer {floor.TOKEN}"}
        missing = await http.post(url, json={"payload": {}})
        wrong = await http.post(url, json={"payload": {}}, headers={"Authorization": "Bearer nope"})
        bad_body = await http.post(url, content=b"{not json", headers=bearer)
        bad_payload = await http.post(url, json={"payload": [1]}, headers=bearer)
        too_big = await http.post(url, content=b'{"payload": "' + b"a" * (10 * 1024 * 1024) + b'"}', headers=bearer)
        ok = await http.post(url, json={"payload": {"n": 1}}, headers=bearer)
    assert (missing.status_code, missing.json()) == (401, {"error": "missing or invalid Authorization header"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid token"})
    assert (bad_body.status_code, bad_body.json()) == (400, {"error": "invalid JSON body"})
    assert (bad_payload.status_code, bad_payload.json()) == (400, {"error": "payload must be a JSON object"})
    assert (too_big.status_code, too_big.json()) == (413, {"error": "request body too large"})
    assert ok.status_code == 202
    assert {k: v for k, v in ok.json().items() if k != "job_id"} == {"status": "queued", "plugin": "behave",
                                                                     "command": "poll"}
    assert len(ok.json()["job_id"]) == 36
    assert ok.headers["x-request-id"]
