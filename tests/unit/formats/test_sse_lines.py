"""The one reader of the event stream's syntax (ductile/formats/sse.py), and the CLI's
`ductile api /events --json` that prints one JSON object per frame through it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ductile.cli.api import _stream
from ductile.formats.sse import SseFrame, SseLines

STREAM = [
    ": keep-alive",
    "",
    "id: 7",
    "event: job.succeeded",
    'data: {"job_id": "a"}',
    "",
    "retry: 5000",
    "",
    "id: 7.1",
    "data: first",
    "data: second",
    "",
    "id: 8",
    "",
]


def test_frames_end_at_blank_lines_comments_and_unknown_fields_do_not_make_one() -> None:
    assert list(SseLines().feed(STREAM)) == [
        SseFrame(id="7", event="job.succeeded", data='{"job_id": "a"}'),
        SseFrame(id="7.1", event=None, data="first\nsecond"),
        SseFrame(id="8", event=None, data=None),
    ]


def test_a_frame_split_across_feeds_is_completed_by_the_later_one() -> None:
    lines = SseLines()
    assert list(lines.feed(["id: 1", "data: x"])) == []
    assert list(lines.feed([""])) == [SseFrame(id="1", event=None, data="x")]


class _Response:
    def iter_lines(self) -> Any:
        return iter(STREAM)


def test_the_cli_prints_one_json_object_per_frame_with_data_decoded_when_it_is_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stream(_Response(), json=True)
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"id": "7", "event": "job.succeeded", "data": {"job_id": "a"}},
        {"id": "7.1", "data": "first\nsecond"},
        {"id": "8"},
    ]
