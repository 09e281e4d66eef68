"""A stored event as readers see it, and the hash chain that links the log."""

from __future__ import annotations

import sqlite3
import struct
from typing import Any

import blake3
import msgspec

from ductile.events import codec
from ductile.events.types import EventBase

GENESIS_CHAIN = bytes(32)
# position (8, unsigned) + event id length (2); schema (4, unsigned) + recorded_at (8, signed)
_HEAD = struct.Struct(">QH")
_TAIL = struct.Struct(">Iq")

SELECT_COLUMNS = "position, event_id, stream, version, type, schema, recorded_at, data, chain"
# What ``from_slim_row`` takes: a fold whose handlers read a record's position, version, type and
# event only (``Projection.reads_meta``) skips converting the other four columns (event id, stream,
# recorded_at, chain: a quarter of its read).
SLIM_COLUMNS = "position, version, type, schema, data"


class Recorded(msgspec.Struct, frozen=True, gc=False):
    position: int
    event_id: bytes
    stream: str
    version: int
    type: str
    schema: int
    recorded_at: int
    event: EventBase


def chain_hash(
    previous: bytes, position: int, event_id: bytes, stream: str, version: int, type_: str, schema: int,
    recorded_at: int, data: bytes,
) -> bytes:
    """blake3 over the previous link and every column of the row.

    ARCHITECTURE §3 names position, event_id, type and data; stream, version, schema and
    recorded_at are covered too, so that moving an event to another stream or rewriting its
    time is detected as well. Variable-length fields are length-prefixed so that no two rows
    hash the same input.
    """
    # One buffer, one blake3 call: hashing is streaming, so these are the same bytes the nine
    # ``update`` calls of release 1 fed it (tests/unit/events pins it against that release's log).
    s = stream.encode()
    t = type_.encode()
    return blake3.blake3(b"".join((
        previous,
        _HEAD.pack(position, len(event_id)), event_id,
        len(s).to_bytes(4, "big"), s,
        version.to_bytes(8, "big"),
        len(t).to_bytes(2, "big"), t,
        _TAIL.pack(schema, recorded_at),
        data,
    ))).digest()


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


def from_slim_row(row: tuple[Any, ...]) -> Recorded:
    """A record of ``SLIM_COLUMNS``: its position, version, type, schema and event; ``event_id``,
    ``stream`` and ``recorded_at`` left blank (``b""``, ``""``, 0)."""
    position, version, type_, schema, data = row
    return Recorded(
        position=position,
        event_id=b"",
        stream="",
        version=version,
        type=type_,
        schema=schema,
        recorded_at=0,
        event=codec.decode(type_, schema, data),
    )


def rows_sql(from_position: int, limit: int | None) -> tuple[str, tuple[Any, ...]]:
    sql = f"SELECT {SELECT_COLUMNS} FROM events WHERE position > ? ORDER BY position"
    if limit is None:
        return sql, (from_position,)
    return sql + " LIMIT ?", (from_position, limit)


HEAD_SQL = "SELECT COALESCE(MAX(position), 0) FROM events"  # the committed head, as any reader sees it


def read_head(conn: sqlite3.Connection) -> int:
    """The last committed position (0 for an empty log) on this connection's snapshot."""
    head: int = conn.execute(HEAD_SQL).fetchone()[0]
    return head


def read_rows(conn: sqlite3.Connection, from_position: int = 0, limit: int | None = None) -> list[Recorded]:
    sql, params = rows_sql(from_position, limit)
    return [from_row(r) for r in conn.execute(sql, params).fetchall()]
