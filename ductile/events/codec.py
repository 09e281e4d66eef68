"""Encoding of events for the log (msgpack) and the upcaster registry.

An event is stored as its Struct encoded with msgpack plus ``type`` and ``schema`` columns. When a
stored schema is older than ``SCHEMAS[type]``, the raw mapping is passed through each registered
upcaster in turn (``(type, from_schema) -> fn(dict) -> dict``) before conversion to the Struct.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ductile.events.types import EVENT_TYPES, SCHEMAS, EventBase

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {
    name: msgspec.msgpack.Decoder(cls) for name, cls in EVENT_TYPES.items()
}
_raw_decoder = msgspec.msgpack.Decoder(dict[str, Any])


class UnknownEventType(ValueError):
    pass


def register_upcaster(type_name: str, from_schema: int) -> Callable[[Upcaster], Upcaster]:
    """Declare how to turn schema ``from_schema`` of ``type_name`` into ``from_schema + 1``."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(type_name, from_schema)] = fn
        return fn

    return register


@register_upcaster("JobStarted", 1)
def _job_started_1(raw: dict[str, Any]) -> dict[str, Any]:
    # Schema 1 was written by one gateway alone: no node is recorded, so no node owns the attempt.
    return {**raw, "node": None}


def encode(event: EventBase) -> bytes:
    return _encoder.encode(event)


def type_name(event: EventBase) -> str:
    return type(event).__name__


def decode(type_: str, schema: int, data: bytes) -> EventBase:
    current = SCHEMAS.get(type_)
    if current is None:
        raise UnknownEventType(f"unknown event type {type_!r}")
    if schema == current:
        return _decoders[type_].decode(data)
    raw = _raw_decoder.decode(data)
    for step in range(schema, current):
        upcast = UPCASTERS.get((type_, step))
        if upcast is None:
            raise UnknownEventType(f"no upcaster for {type_} schema {step}")
        raw = upcast(raw)
    raw["type"] = type_
    return msgspec.convert(raw, EVENT_TYPES[type_])


def to_builtins(event: EventBase) -> dict[str, Any]:
    return msgspec.to_builtins(event)
