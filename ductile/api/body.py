"""Request body rules shared by every POST route (api.md §1)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from ductile.api.errors import ApiError

MAX_BODY = 10 * 1024 * 1024
_decoder = msgspec.json.Decoder()


async def json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise ApiError(413, "request body too large")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "request body too large")
    if not raw.strip():
        return {}
    try:
        body = _decoder.decode(raw)
    except msgspec.DecodeError:
        raise ApiError(400, "invalid JSON body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid JSON body")
    return body


def payload_of(body: dict[str, Any]) -> dict[str, Any]:
    payload = body.get("payload", {})
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ApiError(400, "payload must be a JSON object")
    return payload
