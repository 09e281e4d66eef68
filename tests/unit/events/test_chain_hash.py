"""The chain hash is computed with one blake3 call now; every stored link must stay byte-identical."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import blake3
from hypothesis import given
from hypothesis import strategies as st

from ductile.events.log import verify_chain
from ductile.events.record import chain_hash

RELEASE_1 = Path(__file__).resolve().parents[2] / "fixtures" / "releases" / "r1-5c55a71" / "state.db"


def release_1_chain_hash(previous: bytes, position: int, event_id: bytes, stream: str, version: int, type_: str,
                         schema: int, recorded_at: int, data: bytes) -> bytes:
    """The nine-call form release 1 wrote its logs with, kept verbatim as the reference."""
    h = blake3.blake3(previous)
    h.update(position.to_bytes(8, "big"))
    h.update(len(event_id).to_bytes(2, "big") + event_id)
    s = stream.encode()
    h.update(len(s).to_bytes(4, "big") + s)
    h.update(version.to_bytes(8, "big"))
    t = type_.encode()
    h.update(len(t).to_bytes(2, "big") + t)
    h.update(schema.to_bytes(4, "big"))
    h.update(recorded_at.to_bytes(8, "big", signed=True))
    h.update(data)
    return h.digest()


def test_every_link_of_the_release_1_log_verifies(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copy(RELEASE_1, db)
    conn = sqlite3.connect(db)
    try:
        report = verify_chain(conn)
        rows = conn.execute("SELECT position, event_id, stream, version, type, schema, recorded_at, data, chain"
                            " FROM events ORDER BY position").fetchall()
    finally:
        conn.close()
    assert report.ok and report.events == len(rows) > 0
    previous = bytes(32)
    for *columns, chain in rows:
        assert chain_hash(previous, *columns) == chain
        previous = chain


@given(
    previous=st.binary(min_size=32, max_size=32), position=st.integers(1, 2**63 - 1),
    event_id=st.binary(max_size=64), stream=st.text(max_size=80), version=st.integers(1, 2**63 - 1),
    type_=st.text(max_size=40), schema=st.integers(0, 2**32 - 1), recorded_at=st.integers(-(2**63), 2**63 - 1),
    data=st.binary(max_size=300),
)
def test_the_one_call_form_hashes_the_same_bytes_as_release_1(
    previous: bytes, position: int, event_id: bytes, stream: str, version: int, type_: str, schema: int,
    recorded_at: int, data: bytes,
) -> None:
    args = (previous, position, event_id, stream, version, type_, schema, recorded_at, data)
    assert chain_hash(*args) == release_1_chain_hash(*args)
