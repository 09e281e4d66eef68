"""Decoding the response envelope (plugins.md §6) and validating an `ok` before applying it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ductile.events.types import StopwatchSub
from ductile.plugins.protocol import (
    EmittedEvent,
    LogLine,
    PluginResponse,
    ProtocolError,
    ResponseRejected,
    decode_response,
    validate_ok,
)

NO_OUTPUT = "plugin spawn failed: decode response: plugin produced no output on stdout"
NOT_JSON = "plugin spawn failed: decode response: plugin output is not valid JSON"
NOW = "2026-01-01T00:00:01Z"


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"id-{next(counter)}"


def ok(**fields: object) -> PluginResponse:
    return decode_response(msgspec.json.encode({"status": "ok", **fields}))


# --- decode_response ----------------------------------------------------------------------------


def test_pretty_printed_multi_line_response_with_trailing_newline_parses() -> None:
    stdout = b"""{
  "status": "ok",
  "result": "threshold met (changed): 1",
  "vendor_extension": {"ignored": true},
  "logs": [
    {"level": "info", "message": "threshold met, emitting rows.changed"}
  ]
}

"""
    response = decode_response(stdout)
    assert response.status == "ok"
    assert response.result == "threshold met (changed): 1"
    assert response.logs == (LogLine(level="info", message="threshold met, emitting rows.changed"),)
    assert response.raw["vendor_extension"] == {"ignored": True}


def test_ok_without_result_is_accepted_as_blank() -> None:
    response = decode_response(b'{"status":"ok"}')
    assert (response.result, response.events, response.state_updates) == ("", None, None)


def test_error_response_carries_message_and_retry_flag() -> None:
    response = decode_response(b'{"status":"error","error":"Proof verification failed","retry":false}')
    assert (response.status, response.error, response.retry) == ("error", "Proof verification failed", False)


def test_error_without_retry_is_retryable() -> None:
    assert decode_response(b'{"status":"error","error":"boom"}').retry is True


@pytest.mark.parametrize(
    "stdout", [b'{"status":"error"}', b'{"status":"error","error":""}', b'{"status":"error","error":null}']
)
def test_error_without_message_gets_the_standard_text(stdout: bytes) -> None:
    assert decode_response(stdout).error == "plugin returned status error without message"


def test_error_response_keeps_its_events_raw_for_the_caller_to_ignore() -> None:
    response = decode_response(b'{"status":"error","error":"x","events":[{"type":"a"}]}')
    assert response.events == [{"type": "a"}]


def test_ok_response_ignores_error_and_retry_fields() -> None:
    response = decode_response(b'{"status":"ok","result":"r","error":17,"retry":"maybe"}')
    assert (response.error, response.retry) == ("", True)


@pytest.mark.parametrize("stdout", [b"", b"   \n\t\r\n"])
def test_empty_stdout_is_no_output(stdout: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_response(stdout)
    assert str(caught.value) == NO_OUTPUT


@pytest.mark.parametrize(
    "stdout",
    [
        b"not json",
        b'{"status":"ok"',
        b'{"status":"ok"}\n{"status":"ok"}\n',
        b'Traceback (most recent call last):\n{"status":"ok"}',
        b"[1, 2]",
        b'"ok"',
        b"{}",
        b'{"result":"done"}',
        b'{"status":"OK"}',
        b'{"status":"success"}',
        b'{"status":null}',
        b'{"status":"ok","result":42}',
        b'{"status":"error","error":{"msg":"x"}}',
        b'{"status":"error","retry":"no"}',
        b"\xff\xfe{}",
    ],
)
def test_broken_envelope_is_not_valid_json(stdout: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_response(stdout)
    assert str(caught.value) == NOT_JSON
    assert caught.value.detail


def test_log_levels_are_normalised_and_non_object_items_skipped() -> None:
    response = ok(
        logs=[
            {"level": "debug", "message": "d"},
            {"level": "WARNING", "message": "w"},
            {"level": "warn", "message": "w2"},
            {"level": "error", "message": "e"},
            {"level": "trace", "message": "t"},
            {"message": "no level"},
            "a bare string",
            7,
            {"level": "info", "message": {"structured": 1}},
        ]
    )
    assert response.logs == (
        LogLine("debug", "d"),
        LogLine("warn", "w"),
        LogLine("warn", "w2"),
        LogLine("error", "e"),
        LogLine("info", "t"),
        LogLine("info", "no level"),
        LogLine("info", '{"structured":1}'),
    )


def test_logs_that_are_not_a_list_are_ignored() -> None:
    assert ok(logs={"level": "info"}).logs == ()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["ok", "error", "OK", ""]) | json_values,
        "result": json_values,
        "error": json_values,
        "retry": json_values,
        "events": json_values,
        "state_updates": json_values,
        "logs": st.lists(
            json_values | st.fixed_dictionaries({"level": st.text(max_size=8), "message": json_values}),
            max_size=4,
        ),
    },
)


@given(st.binary())
def test_decode_response_raises_only_protocol_error_on_arbitrary_bytes(stdout: bytes) -> None:
    try:
        response = decode_response(stdout)
    except ProtocolError as exc:
        assert str(exc) in (NO_OUTPUT, NOT_JSON)
    else:
        assert response.status in ("ok", "error")


@given(envelopes)
def test_decode_response_raises_only_protocol_error_on_arbitrary_envelopes(envelope: dict) -> None:
    try:
        response = decode_response(msgspec.json.encode(envelope) + b"\n")
    except ProtocolError as exc:
        assert str(exc) == NOT_JSON or OUT_OF_RANGE.fullmatch(str(exc)), str(exc)
    else:
        assert response.status in ("ok", "error")
        assert all(line.level in ("debug", "info", "warn", "error") for line in response.logs)


OUT_OF_RANGE = re.compile(
    r"plugin spawn failed: decode response: integer out of range at (.+) \(allowed: -2\^63 to 2\^64-1\)", re.DOTALL
)


@pytest.mark.parametrize(("fields", "path"), [
    ({"state_updates": {"big": 2**70}}, "state_updates.big"),
    ({"state_updates": {"a": [1, {"b": -(2**63) - 1}]}}, "state_updates.a[1].b"),
    ({"events": [{"type": "t", "payload": {"n": 2**64}}]}, "events[0].payload.n"),
    ({"ductile_stopwatch_subs": [{"name": "x", "dur_ns": 10**30}]}, "ductile_stopwatch_subs[0].dur_ns"),
    ({"state_updates": {"a b\r": 2**70}}, "state_updates.a b\r"),  # keys are any text, spaces included
])
def test_an_integer_the_log_cannot_hold_is_a_protocol_error_naming_where(fields: dict, path: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        decode_response(msgspec.json.encode({"status": "ok", "result": "x", **fields}))
    match = OUT_OF_RANGE.fullmatch(str(raised.value))
    assert match and match.group(1) == path


def test_integers_at_the_edges_of_the_log_range_and_in_ignored_keys_are_fine() -> None:
    response = ok(state_updates={"lo": -(2**63), "hi": 2**64 - 1}, unknown={"huge": 2**80})
    assert response.state_updates == {"lo": -(2**63), "hi": 2**64 - 1}


def test_deeply_nested_output_is_not_valid_json_rather_than_a_crash() -> None:
    with pytest.raises(ProtocolError, match=re.escape(NOT_JSON)):
        decode_response(b"[" * 100_000)


# --- validate_ok --------------------------------------------------------------------------------


def test_example_a_event_keeps_its_own_result_and_gains_envelope_fields() -> None:
    response = ok(
        result="threshold met (changed): 1",
        events=[
            {
                "type": "rows.changed",
                "payload": {"db_path": "/tmp/t.db", "result": "1", "previous_result": None},
            }
        ],
        state_updates={"last_result": "1"},
    )
    state_updates, events = validate_ok(response, source="sqlite_change", now_rfc3339=NOW, new_id=ids())
    assert state_updates == {"last_result": "1"}
    assert events == [
        EmittedEvent(
            type="rows.changed",
            payload={"db_path": "/tmp/t.db", "result": "1", "previous_result": None},
            dedupe_key=None,
            source="sqlite_change",
            timestamp=NOW,
            event_id="id-1",
        )
    ]


def test_example_b_event_payload_gains_the_result_summary() -> None:
    response = ok(
        result="repo_policy: updated README.md, CHANGELOG.md",
        events=[
            {"type": "repo_policy.completed", "payload": {"repo_path": "/tmp/r/myrepo", "changed": True}}
        ],
    )
    state_updates, [event] = validate_ok(response, source="repo_policy", now_rfc3339=NOW, new_id=ids())
    assert state_updates == {}
    assert event.payload == {
        "repo_path": "/tmp/r/myrepo",
        "changed": True,
        "result": "repo_policy: updated README.md, CHANGELOG.md",
    }
    assert event.source == "repo_policy"


def test_event_without_payload_gets_an_empty_one_and_blank_result_is_not_added() -> None:
    response = ok(result="  ", events=[{"type": "a"}, {"type": "b", "payload": None, "dedupe_key": "k"}])
    _, events = validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids())
    assert [(e.type, e.payload, e.dedupe_key, e.event_id) for e in events] == [
        ("a", {}, None, "id-1"),
        ("b", {}, "k", "id-2"),
    ]


def test_plugin_supplied_envelope_fields_are_kept() -> None:
    response = ok(
        events=[{"type": "a", "event_id": "mine", "timestamp": "2025-01-01T00:00:00Z", "source": "x"}]
    )
    _, [event] = validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids())
    assert (event.event_id, event.timestamp, event.source) == ("mine", "2025-01-01T00:00:00Z", "x")


def test_validation_does_not_modify_the_response() -> None:
    response = ok(result="r", events=[{"type": "a", "payload": {"k": 1}}])
    validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids())
    assert response.raw["events"] == [{"type": "a", "payload": {"k": 1}}]


def test_absent_or_null_events_and_state_updates_mean_nothing_to_do() -> None:
    assert validate_ok(ok(result="r"), source="p", now_rfc3339=NOW, new_id=ids()) == ({}, [])
    response = ok(result="r", events=None, state_updates=None)
    assert validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids()) == ({}, [])


@pytest.mark.parametrize("state_updates", [[1, 2], "text", 7, True])
def test_state_updates_that_are_not_an_object_are_an_invalid_response(state_updates: object) -> None:
    response = ok(result="r", state_updates=state_updates, events=[{"type": "a"}])
    with pytest.raises(ResponseRejected) as caught:
        validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids())
    assert caught.value.reason == "invalid_response"
    assert "state_updates must be an object" in caught.value.message
    assert caught.value.state_updates == {}


@pytest.mark.parametrize(
    ("events", "detail"),
    [
        ({"type": "a"}, "events must be a list (got object)"),
        ("a", "events must be a list (got string)"),
        (["a"], "events[0] must be an object (got string)"),
        ([{"payload": {}}], "events[0].type must be a non-empty string"),
        ([{"type": "ok"}, {"type": ""}], "events[1].type must be a non-empty string"),
        ([{"type": 5}], "events[0].type must be a non-empty string"),
        ([{"type": "ductile.step.succeeded"}], 'reserved event type "ductile.step.succeeded"'),
        ([{"type": "a", "payload": [1]}], "events[0].payload must be an object (got array)"),
        ([{"type": "a", "payload": "x"}], "events[0].payload must be an object (got string)"),
        ([{"type": "a", "dedupe_key": 5}], "events[0].dedupe_key must be a string (got number)"),
    ],
)
def test_invalid_events_are_a_route_error_that_still_carries_the_state_updates(
    events: object, detail: str
) -> None:
    response = ok(result="r", events=events, state_updates={"cursor": 9})
    with pytest.raises(ResponseRejected) as caught:
        validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids())
    assert caught.value.reason == "route_error"
    assert caught.value.message.startswith(f"failed to route events: {detail}")
    assert str(caught.value) == caught.value.message
    assert caught.value.state_updates == {"cursor": 9}


def test_event_ids_come_from_the_id_factory_one_per_event() -> None:
    response = ok(events=[{"type": "a"}, {"type": "b"}, {"type": "c"}])
    _, events = validate_ok(response, source="p", now_rfc3339=NOW, new_id=ids())
    assert [e.event_id for e in events] == ["id-1", "id-2", "id-3"]


def test_stopwatch_subs_keep_well_formed_items_and_drop_the_rest() -> None:
    response = ok(ductile_stopwatch_subs=[
        {"name": "fetch", "dur_ns": 1500, "status": "ok", "bytes": 10, "count": 2, "extra": "ignored"},
        {"name": "parse", "dur_ns": 0},
        {"name": "", "dur_ns": 1}, {"name": "x"}, {"name": "x", "dur_ns": -1}, {"name": "x", "dur_ns": True},
        {"name": "x", "dur_ns": 1.5}, {"name": "x", "dur_ns": 1, "status": 3}, {"name": "x", "dur_ns": 1, "bytes": "9"},
        "not an object", None,
    ])
    assert response.subs == (
        StopwatchSub(name="fetch", dur_ns=1500, status="ok", bytes=10, count=2),
        StopwatchSub(name="parse", dur_ns=0),
    )
    assert ok(ductile_stopwatch_subs={"name": "x", "dur_ns": 1}).subs == ()
