"""A stored event as readers see it, and the hash chain that links the log."""

from __future__ import annotations

from typing import Any

import blake3
import msgspec

from ductile.events import codec
from ductile.events.types import EventBase

GENESIS_CHAIN = bytes(32)

SELECT_COLUMNS = "position, event_id, stream, version, type, schema, recorded_at, data, chain"


class Recorded(msgspec.Struct, frozen=True, gc=False):
    position: int
    event_id: bytes
    stream: str
    version: int
    type: str
    schema: int
    recorded_at: int
    event: EventBase


def chain_hash(previous: bytes, position: int, event_id: bytes, type_: str, data: bytes) -> bytes:
    h = blake3.blake3(previous)
    h.update(position.to_bytes(8, "big"))
    h.update(event_id)
    h.update(type_.encode())
    h.update(data)
    return h.digest()


def from_row(row: tuple[Any, ...]) -> Recorded:
    position, event_id, stream, version, type_, schema, recorded_at, data, _chain = row
    return Recorded(
        position=position,
        event_id=event_id,
        stream=stream,
        version=version,
        type=type_,
        schema=schema,
        recorded_at=recorded_at,
        event=codec.decode(type_, schema, data),
    )
