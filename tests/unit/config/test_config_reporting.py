"""Unknown keys, unsupported keys and how errors are reported (spec config.md §4.6, §5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.config import Config, ConfigError, Diagnostic

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

ROOTS = "plugin_roots: [plugins]\n"


def _error(write: Write, load: Load, text: str, name: str = "config.yaml") -> str:
    write(name, text)
    with pytest.raises(ConfigError) as error:
        load()
    return str(error.value)


def test_every_unknown_key_of_every_file_is_a_warning_with_file_and_path(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS
        + """\
include: [more.yaml]
servce: {name: typo}
service: {nmae: typo}
api: {auth: {tokens: [{secret_ref: a, scopes: [], label: ci}]}}
""",
    )
    write("more.yaml", "plugins:\n  echo: {enabeld: true}\n")
    warnings = load().warnings
    assert warnings == [
        Diagnostic(
            "warning", "config", "servce", "config: key ignored (not a known field)", "config.yaml", 3
        ),
        Diagnostic(
            "warning", "config", "service.nmae", "config: key ignored (not a known field)", "config.yaml", 4
        ),
        Diagnostic(
            "warning",
            "config",
            "api.auth.tokens[0].label",
            "config: key ignored (not a known field)",
            "config.yaml",
            5,
        ),
        Diagnostic(
            "warning",
            "config",
            "plugins.echo.enabeld",
            "config: key ignored (not a known field)",
            "more.yaml",
            2,
        ),
    ]


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("accounts: [{name: a}]", "accounts"),
        ("tcc_paths: [/x]", "tcc_paths"),
        ("routes: []", "routes"),
        ("service: {unconfined: true}", "service.unconfined"),
        ("service: {admission: {fail_on_sidedoor: true}}", "service.admission.fail_on_sidedoor"),
    ],
)
def test_out_of_scope_keys_load_with_a_not_supported_warning(
    write: Write, load: Load, snippet: str, key: str
) -> None:
    write("config.yaml", ROOTS + snippet + "\n")
    config = load()
    assert [w.message for w in config.warnings] == [f"config: {key} is not supported; ignored"]
    assert config.service.admission == {}


def test_legacy_tokens_key_is_recognised_with_a_migration_warning(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", ROOTS + "include: [tokens.yaml]\n")
    write("tokens.yaml", "tokens: [{name: a, key: b}]\n")
    [warning] = load().warnings
    assert warning.message == (
        f"tokens.yaml is no longer read for secrets; migrate with 'ductile vault import --tokens {config_dir / 'tokens.yaml'}'"
    )


def test_pipelines_and_webhooks_stay_raw_and_are_not_checked_for_keys(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS
        + "pipelines:\n  - {name: p, on: a.b, anything: 1}\nplugins: {echo: {enabled: true}}\n"
        + "webhooks: {listen: '127.0.0.1:9', endpoints: [{path: /x, plugin: echo, secret_ref: s, signature_header: X,"
        + " whatever: 2}]}\n",
    )
    config = load()
    assert config.pipelines == [{"name": "p", "on": "a.b", "anything": 1}]
    assert [e.path for e in config.webhooks.endpoints] == ["/x"]
    assert config.warnings == []


def test_yaml_1_2_scalars_keep_on_as_a_key_and_times_as_strings(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS + "pipelines:\n  - {name: p, on: x}\nplugins:\n  echo: {schedules: [{at: 12:30}]}\n",
    )
    config = load()
    assert config.pipelines[0]["on"] == "x"
    assert config.plugins["echo"].schedules == [{"at": "12:30"}]


def test_raw_is_the_merged_interpolated_mapping_without_per_file_keys(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "include: [x.yaml]\nservice: {name: '${N}'}\n")
    write("x.yaml", "environment_vars: {include: []}\napi: {enabled: false}\n")
    assert load({"N": "gw"}).raw == {
        "plugin_roots": ["plugins"],
        "service": {"name": "gw"},
        "api": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("service:\n  name: [unclosed\n", "config.yaml:3: invalid YAML: "),
        ("service:\n\tname: x\n", "config.yaml:2: invalid YAML: "),
        ("a: 1\n---\nb: 2\n", "config.yaml:2: invalid YAML: "),
        ("a: 1\na: 2\n", 'config.yaml:2: duplicate key "a"'),
        ("- just\n- a list\n", "config.yaml:1: expected a mapping of keys at the top level"),
    ],
)
def test_yaml_problems_name_file_and_line(write: Write, load: Load, text: str, prefix: str) -> None:
    # The parser's own wording differs between libyaml and pure-Python PyYAML; file and line do not.
    assert _error(write, load, text).startswith(prefix)


def test_yaml_error_in_an_include_names_the_included_file(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "include: [conf.d]\n")
    message = _error(write, load, "plugins:\n  echo: {enabled: true\n", name="conf.d/bad.yaml")
    assert message.startswith("conf.d/bad.yaml:3: invalid YAML: ")


def test_file_outside_the_config_dir_is_named_by_absolute_path(
    write: Write, load: Load, tmp_path: Path
) -> None:
    outside = tmp_path / "shared" / "extra.yaml"
    outside.parent.mkdir()
    outside.write_text("service: {max_workers: lots}\n")
    write("config.yaml", ROOTS + f"include: [{outside}]\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"{outside}:1: service.max_workers: expected an integer, got a string"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugin_roots: plugins\n", "config.yaml:1: plugin_roots: expected a list, got a string"),
        (ROOTS + "service: []\n", "config.yaml:2: service: expected a mapping, got a list"),
        (
            ROOTS + "plugins: {echo: {config: [1]}}\n",
            "config.yaml:2: plugins.echo.config: expected a mapping, got a list",
        ),
        (
            ROOTS + "service: {tick_interval: [1]}\n",
            "config.yaml:2: service.tick_interval: expected a duration (e.g. 30s), got a list",
        ),
        (ROOTS + "include: x.yaml\n", "config.yaml:2: include: expected a list of paths"),
        (ROOTS + "plugins: {1: {}}\n", "config.yaml:2: plugins: keys must be strings, got an integer 1"),
    ],
)
def test_wrong_types_name_the_key(write: Write, load: Load, text: str, message: str) -> None:
    assert _error(write, load, text) == message


def test_unreadable_root_is_a_config_error_not_a_traceback(
    write: Write, load: Load, config_dir: Path
) -> None:
    (config_dir / "config.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load()


def test_config_error_prefix_formats() -> None:
    assert str(ConfigError("m")) == "m"
    assert str(ConfigError("m", file="config.yaml")) == "config.yaml: m"
    error = ConfigError("m", file="config.yaml", line=14)
    assert (str(error), error.message, error.file, error.line) == (
        "config.yaml:14: m",
        "m",
        "config.yaml",
        14,
    )
