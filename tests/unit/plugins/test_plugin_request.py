"""The request envelope and the `handle` event (plugins.md §5, examples A-C of §10)."""

from __future__ import annotations

import re

import msgspec
import pytest

from ductile.plugins.protocol import InvalidEvent, encode_request, event_for_handle

PIPELINE_CONTEXT = {
    "ductile_plugin": "repo_policy",
    "ductile_pipeline": "repo-changelog",
    "ductile_step_id": "policy",
    "ductile_pipeline_instance_id": "a71c",
    "ductile_route_depth": 1,
    "ductile_route_max_depth": 2,
}


def decoded_keys(request: bytes) -> list[str]:
    return list(msgspec.json.decode(request))


def test_poll_request_matches_example_a_byte_for_byte() -> None:
    request = encode_request(
        job_id="1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        command="poll",
        config={"db_path": "/tmp/t.db", "query": "SELECT count(*) FROM t", "event_type": "rows.changed"},
        state={},
        context={"ductile_plugin": "sqlite_change"},
        deadline_at="2026-01-01T00:01:00Z",
    )
    assert request == (
        b'{"protocol":2,"job_id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","command":"poll",'
        b'"config":{"db_path":"/tmp/t.db","query":"SELECT count(*) FROM t","event_type":"rows.changed"},'
        b'"state":{},"context":{"ductile_plugin":"sqlite_change"},'
        b'"deadline_at":"2026-01-01T00:01:00Z"}\n'
    )


def test_request_is_one_json_document_followed_by_one_newline() -> None:
    request = encode_request(
        job_id="j", command="poll", config={}, state={}, context={}, deadline_at="2026-01-01T00:00:00Z"
    )
    assert request.endswith(b"}\n")
    assert request.count(b"\n") == 1
    assert msgspec.json.decode(request)["protocol"] == 2


def test_all_keys_appear_in_the_spec_order() -> None:
    request = encode_request(
        job_id="j",
        command="handle",
        config={"a": 1},
        state={"s": 1},
        context={"ductile_plugin": "p"},
        deadline_at="2026-01-01T00:00:00Z",
        secrets={"token": "t0p"},
        payload={"type": "x", "payload": {}},
        event={"type": "x", "payload": {}, "timestamp": "2026-01-01T00:00:00Z"},
    )
    assert decoded_keys(request) == [
        "protocol",
        "job_id",
        "command",
        "config",
        "secrets",
        "state",
        "payload",
        "context",
        "event",
        "deadline_at",
    ]


@pytest.mark.parametrize("empty", [None, {}])
def test_empty_secrets_payload_and_event_are_omitted_never_null(empty: dict | None) -> None:
    request = encode_request(
        job_id="j",
        command="poll",
        config={},
        state={},
        context={"ductile_plugin": "p"},
        deadline_at="2026-01-01T00:00:00Z",
        secrets=empty,
        payload=empty,
        event=empty,
    )
    assert decoded_keys(request) == [
        "protocol",
        "job_id",
        "command",
        "config",
        "state",
        "context",
        "deadline_at",
    ]
    assert b"null" not in request


def test_schedule_payload_is_sent_without_an_event() -> None:
    request = encode_request(
        job_id="j",
        command="poll",
        config={},
        state={},
        context={"ductile_plugin": "p"},
        deadline_at="2026-01-01T00:00:00Z",
        payload={"window": "daily"},
    )
    body = msgspec.json.decode(request)
    assert body["payload"] == {"window": "daily"}
    assert "event" not in body


def test_routed_handle_event_matches_example_b() -> None:
    stored = {
        "type": "git_repo_sync.completed",
        "payload": {"repo_path": "/tmp/r/myrepo", "result": "synced"},
        "source": "git_repo_sync",
        "timestamp": "2026-01-01T00:00:00Z",
        "event_id": "0d9f",
    }
    event = event_for_handle(stored, "2026-01-01T00:00:05Z", PIPELINE_CONTEXT)
    assert event == {
        "type": "git_repo_sync.completed",
        "source": "git_repo_sync",
        "timestamp": "2026-01-01T00:00:00Z",
        "event_id": "0d9f",
        "payload": {"repo_path": "/tmp/r/myrepo", "result": "synced", **PIPELINE_CONTEXT},
    }
    assert stored["payload"] == {"repo_path": "/tmp/r/myrepo", "result": "synced"}, (
        "stored payload is untouched"
    )


def test_api_trigger_event_gets_the_job_created_at_as_timestamp_like_example_c() -> None:
    stored = {"type": "api.trigger", "payload": {"email": "a@b.c", "proof": "00ff", "consent": True}}
    event = event_for_handle(stored, "2026-01-01T00:00:00Z", {"ductile_plugin": "agent_handshake"})
    assert event == {
        "type": "api.trigger",
        "timestamp": "2026-01-01T00:00:00Z",
        "payload": {"email": "a@b.c", "proof": "00ff", "consent": True, "ductile_plugin": "agent_handshake"},
    }


def test_context_merge_never_overwrites_event_payload_keys() -> None:
    stored = {"type": "x", "payload": {"ductile_plugin": "upstream", "ductile_route_depth": 0, "own": 1}}
    event = event_for_handle(stored, "2026-01-01T00:00:00Z", PIPELINE_CONTEXT)
    assert event["payload"]["ductile_plugin"] == "upstream"
    assert event["payload"]["ductile_route_depth"] == 0
    assert event["payload"]["ductile_pipeline"] == "repo-changelog"
    assert event["payload"]["own"] == 1


def test_object_without_type_or_payload_becomes_an_untyped_event() -> None:
    stored = {"repo": "r", "ref": "main"}
    event = event_for_handle(stored, "2026-01-01T00:00:00Z", {"ductile_plugin": "p"})
    assert event == {
        "type": "",
        "payload": {"repo": "r", "ref": "main", "ductile_plugin": "p"},
        "timestamp": "2026-01-01T00:00:00Z",
    }
    assert stored == {"repo": "r", "ref": "main"}


def test_event_with_payload_but_no_type_keeps_its_payload() -> None:
    event = event_for_handle({"payload": {"a": 1}}, "2026-01-01T00:00:00Z", {})
    assert event == {"type": "", "payload": {"a": 1}, "timestamp": "2026-01-01T00:00:00Z"}


def test_event_with_type_but_no_payload_gets_an_empty_payload() -> None:
    event = event_for_handle(
        {"type": "tick", "dedupe_key": "k1"}, "2026-01-01T00:00:00Z", {"ductile_plugin": "p"}
    )
    assert event == {
        "type": "tick",
        "payload": {"ductile_plugin": "p"},
        "dedupe_key": "k1",
        "timestamp": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ([1, 2], "job payload must be a JSON object (got array)"),
        ("text", "job payload must be a JSON object (got string)"),
        (None, "job payload must be a JSON object (got null)"),
        ({"type": 5, "payload": {}}, "type must be a string"),
        ({"type": "x", "payload": [1]}, "payload must be a JSON object (got array)"),
        ({"type": "x", "timestamp": 17}, "timestamp must be a string"),
    ],
)
def test_stored_payload_that_is_not_a_valid_event_raises_invalid_event(stored: object, message: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(message)) as caught:
        event_for_handle(stored, "2026-01-01T00:00:00Z", {})
    assert isinstance(caught.value, ValueError)
