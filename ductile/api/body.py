"""Request body rules shared by every POST route (api.md §1)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from ductile import json_limits
from ductile.api.errors import ApiError

MAX_BODY = 10 * 1024 * 1024
"""api.md §1: a body over 10 MiB is 413. Every app sets it as Litestar's ``request_max_body_size``,
which enforces it."""


async def json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    # Litestar enforces MAX_BODY (every app sets it as request_max_body_size), on the announced
    # Content-Length before reading and on the bytes read: its 413 is answered by the app's handler.
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json_limits.decode(raw)
    except msgspec.DecodeError:
        raise ApiError(400, "invalid JSON body") from None
    except json_limits.TooDeep:
        raise ApiError(400, f"JSON body nested too deeply (at most {json_limits.MAX_DEPTH} levels)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid JSON body")
    try:
        json_limits.check_int_width(body, raw)
    except json_limits.IntTooWide as exc:
        # The event log stores int64/uint64 only; refusing here beats a 500 when the enqueue is encoded.
        raise ApiError(400, f"JSON integer out of range at {exc.path} (integers must fit in 64 bits)") from None
    return body


def payload_of(body: dict[str, Any]) -> dict[str, Any]:
    payload = body.get("payload", {})
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ApiError(400, "payload must be a JSON object")
    return payload
