"""The skill manifest's one-line entries (cli.md §2.1) and its ``--json`` shape (api.md §4.1)."""

from __future__ import annotations

from types import SimpleNamespace

from ductile.cli.skills import pipeline_entries, pipeline_line, plugin_entries, plugin_line, render_schema
from ductile.plugins.manifest import CommandSpec, parse_manifest

MANIFEST = """
manifest_spec: ductile.plugin
manifest_version: 1
name: fetch
version: "1.2"
protocol: 2
entrypoint: run.py
description: Fetches things.
commands:
  - name: poll
    type: read
    description: Check the feed
    input_schema: {url: string, depth: integer}
    output_schema: {type: object, properties: {items: {type: array}}, required: [items]}
  - name: store
  - name: replay
    type: write
    idempotent: true
    retry_safe: true
    description: Say "again"
"""


def catalog_of(manifest: str) -> SimpleNamespace:
    parsed = parse_manifest(manifest)
    return SimpleNamespace(plugins={"fetch": SimpleNamespace(manifest=parsed)})


def test_read_command_line_has_tier_hints_schemas_and_description() -> None:
    poll = parse_manifest(MANIFEST).command("poll")
    assert plugin_line("fetch", poll) == (
        'fetch.poll m=POST p=/plugin/fetch/poll tier=READ mut=0 idem=1 retry=1'
        ' in="{depth: integer, url: string}"'
        ' out="{\\"type\\":\\"object\\",\\"properties\\":{\\"items\\":{\\"type\\":\\"array\\"}},\\"required\\":[\\"items\\"]}"'
        ' d="Check the feed"'
    )


def test_write_commands_default_to_not_idempotent_and_not_retry_safe() -> None:
    manifest = parse_manifest(MANIFEST)
    assert plugin_line("fetch", manifest.command("store")) == \
        "fetch.store m=POST p=/plugin/fetch/store tier=WRITE mut=1 idem=0 retry=0"
    assert plugin_line("fetch", manifest.command("replay")) == \
        'fetch.replay m=POST p=/plugin/fetch/replay tier=WRITE mut=1 idem=1 retry=1 d="Say \\"again\\""'


def test_an_explicit_false_hint_overrides_the_read_default() -> None:
    spec = CommandSpec(name="peek", type="read", idempotent=False, retry_safe=False)
    assert plugin_line("p", spec) == "p.peek m=POST p=/plugin/p/peek tier=READ mut=0 idem=0 retry=0"


def test_schemas_render_compact_for_plain_objects_and_as_json_otherwise() -> None:
    assert render_schema(None) == ""
    assert render_schema({"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}) == \
        "{a: integer, b: string}"
    assert render_schema({"type": "string"}) == '{"type":"string"}'
    assert render_schema({"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}) == \
        '{"type":"object","properties":{"a":{"type":"string","format":"uri"}}}'


def test_plugin_entries_are_sorted_by_plugin_then_command_with_the_api_shape() -> None:
    entries = plugin_entries(catalog_of(MANIFEST))
    assert [e["name"] for e in entries] == ["plugin.fetch.poll", "plugin.fetch.replay", "plugin.fetch.store"]
    assert entries[0] == {"name": "plugin.fetch.poll", "kind": "plugin", "description": "Check the feed",
                          "endpoint": "/plugin/fetch/poll", "tier": "READ", "plugin": "fetch", "command": "poll"}
    assert "description" not in entries[2] and entries[2]["tier"] == "WRITE"


def test_pipeline_entries_and_lines() -> None:
    entries = pipeline_entries([
        {"name": "zeta", "on": " repo.synced ", "steps": [{"uses": "x"}]},
        {"name": "alpha", "on": "intake.requested", "execution_mode": "synchronous", "timeout": "90s"},
        {"name": "beta", "on-hook": "job.failed", "execution_mode": "sync"},
        {"steps": []},  # no name: not a skill
    ])
    assert entries == [
        {"name": "pipeline.alpha", "kind": "pipeline", "endpoint": "/pipeline/alpha", "pipeline": "alpha",
         "trigger": "intake.requested", "execution_mode": "synchronous", "timeout_secs": 90},
        {"name": "pipeline.beta", "kind": "pipeline", "endpoint": "/pipeline/beta", "pipeline": "beta",
         "trigger": "job.failed", "execution_mode": "synchronous", "timeout_secs": 30},
        {"name": "pipeline.zeta", "kind": "pipeline", "endpoint": "/pipeline/zeta", "pipeline": "zeta",
         "trigger": "repo.synced", "execution_mode": "asynchronous"},
    ]
    assert [pipeline_line(e) for e in entries] == [
        'alpha m=POST p=/pipeline/alpha trigger="intake.requested" mode=sync timeout=1m30s',
        'beta m=POST p=/pipeline/beta trigger="job.failed" mode=sync timeout=30s',
        'zeta m=POST p=/pipeline/zeta trigger="repo.synced" mode=async',
    ]
