"""Conformance: stored events of an older schema decode through the registered upcasters.

The schema bump here is a test-only story: JobSkipped schema 2 says ``condition false`` where
schema 1 wrote ``if: false``. The fixture installs it and restores the real registry afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from ductile.events import codec, types
from ductile.events.log import read_rows, read_stream
from ductile.events.types import JobSkipped

pytestmark = pytest.mark.anyio


@pytest.fixture
def skipped_schema_2() -> Iterator[Callable[[], None]]:
    """``activate()`` bumps JobSkipped to schema 2 with a 1 -> 2 upcaster; undone at teardown."""
    saved_schema = codec.SCHEMAS["JobSkipped"]
    saved_upcasters = dict(codec.UPCASTERS)

    def v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
        if raw.get("reason") == "if: false":
            raw = {**raw, "reason": "condition false"}
        return raw

    def activate() -> None:
        codec.SCHEMAS["JobSkipped"] = 2
        codec.register_upcaster("JobSkipped", 1)(v1_to_v2)

    yield activate
    codec.SCHEMAS["JobSkipped"] = saved_schema
    codec.UPCASTERS.clear()
    codec.UPCASTERS.update(saved_upcasters)


def test_the_log_and_the_codec_share_one_schema_registry():
    # The log writes ``SCHEMAS[type]`` and the codec upcasts against it: they must be one dict.
    assert codec.SCHEMAS is types.SCHEMAS


def test_a_schema_1_payload_decodes_through_the_upcaster(skipped_schema_2):
    old = codec.encode(JobSkipped(job_id="j1", reason="if: false", at=5))
    skipped_schema_2()
    assert codec.decode("JobSkipped", 1, old) == JobSkipped(job_id="j1", reason="condition false", at=5)
    # A current-schema payload is decoded as stored.
    assert codec.decode("JobSkipped", 2, old) == JobSkipped(job_id="j1", reason="if: false", at=5)


def test_a_hand_written_schema_1_mapping_decodes(skipped_schema_2):
    skipped_schema_2()
    legacy = msgspec.msgpack.encode({"type": "JobSkipped", "at": 7, "job_id": "j2", "reason": "if: false"})
    assert codec.decode("JobSkipped", 1, legacy) == JobSkipped(job_id="j2", reason="condition false", at=7)


async def test_schema_1_rows_in_the_log_are_upcast_on_read(open_log, skipped_schema_2):
    log = await open_log()
    await log.append("job-j1", [JobSkipped(job_id="j1", reason="if: false", at=1)])
    skipped_schema_2()
    await log.append("job-j2", [JobSkipped(job_id="j2", reason="if: false", at=2)])

    conn = log.reader()
    assert conn.execute("SELECT stream, schema FROM events ORDER BY position").fetchall() == [
        ("job-j1", 1),
        ("job-j2", 2),
    ]
    old, new = read_rows(conn)
    assert (old.schema, old.event) == (1, JobSkipped(job_id="j1", reason="condition false", at=1))
    assert (new.schema, new.event) == (2, JobSkipped(job_id="j2", reason="if: false", at=2))
    assert read_stream(conn, "job-j1")[0].event.reason == "condition false"
    conn.close()


def test_a_missing_upcaster_step_is_an_error(skipped_schema_2):
    old = codec.encode(JobSkipped(job_id="j1", reason="x", at=1))
    skipped_schema_2()
    codec.SCHEMAS["JobSkipped"] = 3  # no 2 -> 3 upcaster registered
    with pytest.raises(codec.UnknownEventType, match="no upcaster for JobSkipped schema 2"):
        codec.decode("JobSkipped", 1, old)


def test_an_unknown_event_type_is_an_error():
    with pytest.raises(codec.UnknownEventType, match="unknown event type 'JobTeleported'"):
        codec.decode("JobTeleported", 1, b"\x80")
