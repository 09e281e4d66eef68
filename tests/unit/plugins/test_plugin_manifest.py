"""Manifest parsing (plugins.md §2): lenient about unknown keys, strict about the listed rules."""

from __future__ import annotations

import copy

import pytest
import yaml

from ductile.plugins.manifest import CommandSpec, FactOutput, ManifestError, parse_manifest

BASE: dict = {
    "manifest_spec": "ductile.plugin",
    "manifest_version": 1,
    "name": "sqlite_change",
    "protocol": 2,
    "entrypoint": "run.py",
    "commands": [{"name": "poll", "type": "read"}, {"name": "health", "type": "read"}],
}


def manifest_yaml(**changes: object) -> str:
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return yaml.safe_dump(doc, sort_keys=False)


_DROP = object()


def test_minimal_manifest_gets_the_documented_defaults() -> None:
    m = parse_manifest(manifest_yaml())
    assert m.name == "sqlite_change"
    assert m.version == ""
    assert m.protocol == 2
    assert m.entrypoint == "run.py"
    assert m.description == ""
    assert m.concurrency_safe is True
    assert m.commands == (CommandSpec(name="poll", type="read"), CommandSpec(name="health", type="read"))
    assert m.fact_outputs == ()
    assert m.config_required == ()
    assert m.config_optional == ()
    assert m.stopwatch_max_subs == 32
    assert m.ignored_keys == ()


def test_real_world_manifest_with_leading_comments_and_unknown_keys_loads() -> None:
    text = """\
# sqlite_change: emit an event when a query result changes.
# Maintained by the ops team.

manifest_spec: ductile.plugin
manifest_version: 1
name: sqlite_change
version: 0.3.1
protocol: 2
entrypoint: run.py
description: Watch a SQLite query and emit when it changes.
concurrency_safe: false
x-vendor:
  team: ops
homepage: https://example.invalid/sqlite_change
commands:
  - name: poll
    type: read
    description: Run the query and compare.
    idempotent: true
    retry_safe: true
    x-vendor-note: ignored
    values:
      consume: [payload.db_path, payload.*]
      emit:
        - event: rows.changed
          values: [payload.result, payload.previous_result]
  - name: health
fact_outputs:
  - when: {command: poll}
    from: state_updates
    fact_type: sqlite_change.snapshot
    compatibility_view: mirror_object
config_keys:
  required: [db_path, query]
  optional: [event_type]
stopwatch:
  max_subs: 8
"""
    m = parse_manifest(text)
    assert m.name == "sqlite_change"
    assert m.version == "0.3.1"
    assert m.description == "Watch a SQLite query and emit when it changes."
    assert m.concurrency_safe is False
    assert m.commands[0] == CommandSpec(
        name="poll", type="read", description="Run the query and compare.", idempotent=True, retry_safe=True
    )
    assert m.fact_outputs == (
        FactOutput(command="poll", fact_type="sqlite_change.snapshot", compatibility_view="mirror_object"),
    )
    assert m.config_required == ("db_path", "query")
    assert m.config_optional == ("event_type",)
    assert m.stopwatch_max_subs == 8
    assert m.ignored_keys == ("x-vendor", "homepage", "commands[0].x-vendor-note")


def test_command_without_type_is_a_write_command() -> None:
    m = parse_manifest(manifest_yaml(commands=[{"name": "handle"}, {"name": "poll", "type": "read"}]))
    handle = m.command("handle")
    assert handle is not None
    assert handle.type == "write"
    assert m.command("poll") == CommandSpec(name="poll", type="read")


def test_a_command_declared_twice_keeps_its_first_entry_and_is_reported() -> None:
    commands = [{"name": "poll", "type": "read", "description": "first"}, {"name": "health", "type": "read"},
                {"name": "poll", "type": "write", "description": "second"}, {"name": "poll"}]
    manifest = parse_manifest(manifest_yaml(commands=commands))
    assert [c.name for c in manifest.commands] == ["poll", "health"]
    poll = manifest.command("poll")
    assert poll is not None and (poll.type, poll.description) == ("read", "first")
    assert manifest.repeated_commands == ("poll",)


def test_command_lookup_returns_none_for_an_undeclared_command() -> None:
    assert parse_manifest(manifest_yaml()).command("token_refresh") is None


def test_numeric_version_keeps_its_written_form() -> None:
    assert parse_manifest(manifest_yaml(version=_DROP) + "version: 1.10\n").version == "1.10"
    assert parse_manifest(manifest_yaml(version="2.0.0")).version == "2.0.0"
    assert parse_manifest(manifest_yaml(version=3)).version == "3"


def test_folded_description_becomes_one_line() -> None:
    text = manifest_yaml() + "description: >\n  Watch a query\n  and emit.\n"
    assert parse_manifest(text).description == "Watch a query and emit."


def test_bytes_input_is_accepted() -> None:
    assert parse_manifest(manifest_yaml().encode()).name == "sqlite_change"


def test_compact_input_schema_is_expanded_to_an_object_schema() -> None:
    commands = [
        {
            "name": "handle",
            "input_schema": {"repo_path": "string", "count": "integer", "tag": ["string", "null"]},
            "output_schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        }
    ]
    spec = parse_manifest(manifest_yaml(commands=commands)).commands[0]
    assert spec.input_schema == {
        "type": "object",
        "properties": {
            "repo_path": {"type": "string"},
            "count": {"type": "integer"},
            "tag": {"type": ["string", "null"]},
        },
    }
    assert spec.output_schema == {"type": "object", "properties": {"ok": {"type": "boolean"}}}


def test_stopwatch_max_subs_zero_means_the_default() -> None:
    assert parse_manifest(manifest_yaml(stopwatch={"max_subs": 0})).stopwatch_max_subs == 32
    assert parse_manifest(manifest_yaml(stopwatch={"max_subs": 256})).stopwatch_max_subs == 256


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": 1}, "unsupported protocol version: 1"),
        ({"protocol": 3}, "unsupported protocol version: 3"),
        ({"protocol": True}, "unsupported protocol version: True"),
        ({"protocol": _DROP}, "protocol is required"),
        ({"manifest_spec": _DROP}, "manifest_spec is required"),
        ({"manifest_spec": "other.plugin"}, "unsupported manifest_spec: 'other.plugin'"),
        ({"manifest_version": 2}, "unsupported manifest_version: 2"),
        ({"manifest_version": "1"}, "unsupported manifest_version: 1"),
        ({"manifest_version": _DROP}, "manifest_version is required"),
        ({"name": _DROP}, "name is required"),
        ({"name": "my.plugin"}, "name 'my.plugin' is invalid"),
        ({"name": "_private"}, "name '_private' is invalid"),
        ({"name": "trailing\n"}, "name 'trailing\\n' is invalid"),
        ({"name": 42}, "name 42 is invalid"),
        ({"entrypoint": _DROP}, "entrypoint is required"),
        ({"entrypoint": ""}, "entrypoint must be a non-empty string"),
        ({"version": ["1"]}, "version must be a string"),
        ({"description": 5}, "description must be a string"),
        ({"concurrency_safe": "no-thanks"}, "concurrency_safe must be a boolean"),
        ({"commands": _DROP}, "commands is required"),
        ({"commands": []}, "commands must be a non-empty list"),
        ({"commands": {"poll": {}}}, "commands must be a non-empty list"),
        ({"commands": ["poll", "health"]}, "commands[0] must be object with name/type"),
        ({"commands": [{"type": "read"}]}, "commands[0] must be object with name/type"),
        ({"commands": [{"name": "poll"}, {"name": "9lives"}]}, "commands[1].name '9lives' is invalid"),
        ({"commands": [{"name": "poll", "type": "admin"}]}, 'commands[0].type must be "read" or "write"'),
        (
            {"commands": [{"name": "poll", "idempotent": "yes please"}]},
            "commands[0].idempotent must be a boolean",
        ),
        (
            {"commands": [{"name": "poll", "input_schema": ["a"]}]},
            "commands[0].input_schema must be an object",
        ),
        (
            {"commands": [{"name": "poll", "input_schema": {"a": 1}}]},
            "commands[0].input_schema.a must be a type",
        ),
        (
            {"commands": [{"name": "poll", "values": {"consume": ["event.x"]}}]},
            "commands[0].values.consume[0] must be payload.<seg>",
        ),
        (
            {"commands": [{"name": "poll", "values": {"consume": ["payload.a b"]}}]},
            "commands[0].values.consume[0] must be payload.<seg>",
        ),
        (
            {"commands": [{"name": "poll", "values": {"emit": [{"event": "", "values": []}]}}]},
            "commands[0].values.emit[0].event must be a non-empty string",
        ),
        (
            {"commands": [{"name": "poll", "values": {"emit": [{"event": "x", "values": ["p.x"]}]}}]},
            "commands[0].values.emit[0].values[0] must be payload.<seg>",
        ),
        ({"fact_outputs": {"when": "poll"}}, "fact_outputs must be a list"),
        (
            {"fact_outputs": [{"when": {"command": "sync"}, "from": "state_updates", "fact_type": "t"}]},
            "fact_outputs[0].when.command must name a declared command (got 'sync')",
        ),
        (
            {"fact_outputs": [{"when": {"command": "poll"}, "from": "result", "fact_type": "t"}]},
            'fact_outputs[0].from must be "state_updates"',
        ),
        (
            {"fact_outputs": [{"when": {"command": "poll"}, "from": "state_updates", "fact_type": ""}]},
            "fact_outputs[0].fact_type must be a non-empty string",
        ),
        (
            {
                "fact_outputs": [
                    {
                        "when": {"command": "poll"},
                        "from": "state_updates",
                        "fact_type": "t",
                        "compatibility_view": "merge",
                    }
                ]
            },
            'fact_outputs[0].compatibility_view must be empty or "mirror_object"',
        ),
        ({"config_keys": ["db_path"]}, "config_keys must be an object"),
        (
            {"config_keys": {"required": "db_path"}},
            "config_keys.required must be a list of non-empty strings",
        ),
        ({"stopwatch": {"max_subs": 257}}, "stopwatch.max_subs must be between 1 and 256 (got 257)"),
        ({"stopwatch": {"max_subs": -1}}, "stopwatch.max_subs must be between 1 and 256 (got -1)"),
        ({"stopwatch": {"max_subs": "many"}}, "stopwatch.max_subs must be an integer"),
    ],
)
def test_manifest_breaking_a_rule_is_refused_with_a_clear_message(changes: dict, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_yaml(**changes))
    assert str(caught.value).startswith(message)


def test_fact_output_without_compatibility_view_is_accepted() -> None:
    rule = {"when": {"command": "poll"}, "from": "state_updates", "fact_type": "snap"}
    assert parse_manifest(manifest_yaml(fact_outputs=[rule])).fact_outputs == (
        FactOutput(command="poll", fact_type="snap"),
    )


def test_invalid_yaml_is_refused_and_names_the_file() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest("name: [unclosed\n", path="/plugins/x/manifest.yaml")
    assert str(caught.value).startswith("invalid YAML:")
    assert "/plugins/x/manifest.yaml" in str(caught.value)
    assert caught.value.path == "/plugins/x/manifest.yaml"


@pytest.mark.parametrize(("text", "kind"), [("", "null"), ("- a\n- b\n", "list"), ("just text\n", "string")])
def test_manifest_that_is_not_a_mapping_is_refused(text: str, kind: str) -> None:
    with pytest.raises(ManifestError, match=f"manifest must be a YAML mapping \\(got {kind}\\)"):
        parse_manifest(text)


def test_multiple_yaml_documents_are_refused() -> None:
    with pytest.raises(ManifestError, match="invalid YAML"):
        parse_manifest(manifest_yaml() + "---\nname: other\n")
