"""One YAML dialect (1.2 core schema) for config files and plugin manifests."""

from __future__ import annotations

import pytest

from ductile.config import ConfigError
from ductile.config.yaml_core import parse_yaml
from ductile.formats.yaml12 import DuplicateKey, YamlError, parse_document
from ductile.plugins.manifest import ManifestError, parse_manifest

MANIFEST = """\
manifest_spec: ductile.plugin
manifest_version: 1
name: switchy
version: 1.10
description: on
protocol: 2
entrypoint: run.py
commands:
  - name: poll
    type: read
    description: no
"""


def test_yaml_1_1_booleans_are_plain_strings_in_a_manifest_as_in_config() -> None:
    manifest = parse_manifest(MANIFEST)
    assert manifest.description == "on"  # YAML 1.1 would have made this True and refused it
    assert manifest.command("poll").description == "no"  # type: ignore[union-attr]
    config_value, _lines = parse_yaml("description: on\nwhen: no\n", "config.yaml")
    assert config_value == {"description": "on", "when": "no"}


def test_a_manifest_version_keeps_the_text_as_written() -> None:
    assert parse_manifest(MANIFEST).version == "1.10"


@pytest.mark.parametrize(
    ("text", "value"),
    [("a: 0o17\n", {"a": 15}), ("a: 0x1f\n", {"a": 31}), ("a: 12:30\n", {"a": "12:30"}),
     ("a: 2024-01-02\n", {"a": "2024-01-02"}), ("a: ~\n", {"a": None}), ("a: .inf\n", {"a": float("inf")})],
)
def test_core_schema_scalars(text: str, value: object) -> None:
    assert parse_document(text).value == value


def test_a_repeated_key_is_refused_in_config_but_last_wins_in_a_manifest() -> None:
    with pytest.raises(DuplicateKey):
        parse_document("a: 1\na: 2\n")
    with pytest.raises(ConfigError, match='duplicate key "a"'):
        parse_yaml("a: 1\na: 2\n", "config.yaml")
    assert parse_document("a: 1\na: 2\n", refuse_duplicate_keys=False).value == {"a": 2}
    assert parse_manifest(MANIFEST + "name: renamed\n").name == "renamed"


def test_nesting_too_deep_is_a_yaml_error_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(YamlError, match="nesting"):  # libyaml's limit, or Python's recursion limit
        parse_document(deep)
    with pytest.raises(ConfigError, match=r"invalid YAML: .*nesting"):
        parse_yaml(deep, "config.yaml")
    with pytest.raises(ManifestError, match=r"invalid YAML: .*nesting.* in /p/manifest\.yaml"):
        parse_manifest(deep, path="/p/manifest.yaml")
