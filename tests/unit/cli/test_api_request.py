"""How ``ductile api`` turns -X/-f/-H/-b into a request (cli.md §2.6), without any I/O."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ductile.cli.api import build_request, field_value, fields_body
from ductile.cli.output import CliFailure


def body_of(*args: str, **kw: object) -> object:
    request = build_request(*args, **kw)  # type: ignore[arg-type]
    assert request.body is not None
    return json.loads(request.body)


@pytest.mark.parametrize(("text", "value"), [
    ("7", 7), ("-3", -3), ("true", True), ("false", False), ("null", None), ("1.5", 1.5),
    ('{"mode":"ok"}', {"mode": "ok"}), ("[1,2]", [1, 2]), ('"quoted"', "quoted"),
    ("plain", "plain"), ("007", "007"), ("", ""), ("x=y", "x=y"), ("{broken", "{broken"),
])
def test_field_values_are_json_when_they_parse_and_strings_otherwise(text: str, value: object) -> None:
    assert field_value(text) == value


def test_method_defaults_to_get_without_a_body_and_post_with_fields_or_body() -> None:
    assert build_request("/healthz").method == "GET"
    assert build_request("/plugin/p/c", fields=["a=1"]).method == "POST"
    assert build_request("/plugin/p/c", body="{}").method == "POST"
    assert build_request("/plugin/p/c", method="put", body="{}").method == "PUT"
    assert build_request("healthz").path == "/healthz"


def test_plugin_and_pipeline_fields_go_under_payload() -> None:
    assert body_of("/pipeline/intake-flow", fields=["id=7"]) == {"payload": {"id": 7}}
    assert body_of("/plugin/behave/poll", fields=["mode=ok", "n=2", "flag=true"]) == \
        {"payload": {"mode": "ok", "n": 2, "flag": True}}
    assert body_of("/plugin/behave/poll", fields=['payload={"mode":"ok"}']) == {"payload": {"mode": "ok"}}
    assert body_of("/plugin/behave/poll", fields=["payload.url=x", "depth=1"]) == {"payload": {"url": "x", "depth": 1}}
    assert body_of("/plugin/behave/poll", fields=['payload={"a":1}', "b=2"]) == {"payload": {"a": 1, "b": 2}}


def test_other_routes_take_fields_at_the_top_level_with_dotted_keys_nesting() -> None:
    assert body_of("/system/breaker/p/reset", fields=["command=poll"]) == {"command": "poll"}
    assert body_of("/vault/secret", fields=["a.b.c=1", "a.b.d=x", "e=false"]) == \
        {"a": {"b": {"c": 1, "d": "x"}}, "e": False}
    # -X GET on a plugin path: still no payload wrapping (query parameters instead).
    assert fields_body(["x=1"], under_payload=False) == {"x": 1}


def test_get_fields_become_query_parameters_kept_as_written() -> None:
    request = build_request("/jobs?status=ok", method="GET", fields=["limit=1", "plugin=behave"])
    assert request.body is None
    assert request.query == [("status", "ok"), ("limit", "1"), ("plugin", "behave")]
    assert request.target == "/jobs?status=ok&limit=1&plugin=behave"
    assert request.path == "/jobs"


@pytest.mark.parametrize(("kw", "message"), [
    ({"fields": ["novalue"]}, "-f expects key=value (got 'novalue')"),
    ({"fields": ["=1"]}, "-f expects key=value (got '=1')"),
    ({"fields": ["a..b=1"]}, "-f expects key=value (got 'a..b=1')"),
    ({"fields": ["a=1", "a=2"]}, "-f a: given more than once"),
    ({"fields": ["a=1", "a.b=2"]}, "-f a.b: conflicts with an earlier field"),
    ({"fields": ["a=1"], "body": "{}"}, "use only one of -b/--body or -f/--field"),
    ({"headers": ["no colon"]}, "-H expects 'Name: value' (got 'no colon')"),
    ({"headers": ["Bad Name: v"]}, "-H expects 'Name: value' (got 'Bad Name: v')"),
    ({"method": "GE T"}, "invalid -X/--method 'GE T'"),
])
def test_malformed_flags_are_command_line_errors_exit_2(kw: dict[str, object], message: str) -> None:
    with pytest.raises(CliFailure) as info:
        build_request("/vault/secret", **kw)  # type: ignore[arg-type]
    assert (info.value.code, info.value.message) == (2, message)


def test_a_plugin_payload_field_must_be_an_object() -> None:
    with pytest.raises(CliFailure) as info:
        build_request("/plugin/p/c", fields=["payload=[1]"])
    assert (info.value.code, info.value.message) == (2, "-f payload: payload must be a JSON object")


def test_headers_are_split_at_the_first_colon_and_trimmed() -> None:
    request = build_request("/healthz", headers=["X-Request-ID:  abc:def ", "Accept: text/plain"])
    assert request.headers == [("X-Request-ID", "abc:def"), ("Accept", "text/plain")]
    assert request.header("x-request-id") == "abc:def"


def test_a_body_is_sent_as_written_from_argv_a_file_or_stdin(tmp_path: Path) -> None:
    assert build_request("/plugin/p/c", body='{"payload": {}}').body == b'{"payload": {}}'
    path = tmp_path / "body.json"
    path.write_bytes(b'{"payload": {"from": "file"}}')
    assert build_request("/plugin/p/c", body=f"@{path}").body == path.read_bytes()
    assert build_request("/plugin/p/c", body="-", stdin=io.StringIO('{"a": 1}')).body == b'{"a": 1}'
    with pytest.raises(CliFailure) as info:
        build_request("/plugin/p/c", body=f"@{tmp_path / 'missing.json'}")
    assert info.value.code == 1 and "cannot read --body file" in info.value.message


def test_a_json_content_type_is_added_only_with_a_body_and_only_when_not_given() -> None:
    assert build_request("/healthz").header("content-type") is None
    assert build_request("/plugin/p/c", fields=["a=1"]).header("content-type") == "application/json"
    given = build_request("/plugin/p/c", body="x", headers=["Content-Type: text/plain"])
    assert given.headers == [("Content-Type", "text/plain")]
