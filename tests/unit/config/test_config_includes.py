"""Includes and merge rules (spec config.md §2)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.config import Config, ConfigError

Write = Callable[[str, str], Path]
Load = Callable[..., Config]


def test_included_file_is_relative_to_the_including_file(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [sub/a.yaml]\n")
    write("sub/a.yaml", "include: [b.yaml]\nservice: {name: from-a}\n")
    write("sub/b.yaml", "service: {log_level: debug}\n")
    config = load()
    assert config.files == [config_dir / "config.yaml", config_dir / "sub/a.yaml", config_dir / "sub/b.yaml"]
    assert (config.service.name, config.service.log_level) == ("from-a", "debug")


def test_directory_include_loads_yaml_files_sorted_and_skips_dotfiles(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [conf.d]\n")
    write("conf.d/20-b.yaml", "service: {name: b}\n")
    write("conf.d/10-a.yaml", "service: {name: a}\n")
    write("conf.d/.hidden.yaml", "service: {name: hidden}\n")
    write("conf.d/notes.txt", "not yaml: [\n")
    config = load()
    assert config.files[1:] == [config_dir / "conf.d/10-a.yaml", config_dir / "conf.d/20-b.yaml"]
    assert config.service.name == "b"


def test_yml_file_in_an_included_directory_is_ignored_with_a_warning(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [conf.d]\n")
    write("conf.d/old.yml", "service: {name: old}\n")
    config = load()
    assert config.service.name == "ductile"
    messages = [w.message for w in config.warnings]
    assert f"include: {config_dir / 'conf.d/old.yml'} ignored (only *.yaml files are loaded)" in messages


def test_nested_includes_merge_depth_first_in_listed_order(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [a.yaml, c.yaml]\n")
    write("a.yaml", "include: [b.yaml]\npipelines: [{name: a}]\n")
    write("b.yaml", "pipelines: [{name: b}]\n")
    write("c.yaml", "pipelines: [{name: c}]\n")
    config = load()
    assert [p["name"] for p in config.pipelines] == ["a", "b", "c"]
    assert [f.name for f in config.files] == ["config.yaml", "a.yaml", "b.yaml", "c.yaml"]


def test_missing_include_names_the_including_file_and_absolute_path(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [a.yaml]\n")
    write("a.yaml", "include: [there.yaml, gone.yaml]\n")
    write("there.yaml", "{}\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"a.yaml:1: include[1] (a.yaml): file not found: {config_dir / 'gone.yaml'}"


def test_circular_include_is_an_error(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [a.yaml]\n")
    write("a.yaml", "include: [config.yaml]\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == (
        f"a.yaml:1: include[0] (a.yaml): {config_dir / 'config.yaml'} is already included (circular or repeated include)"
    )


def test_diamond_include_is_an_error(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [a.yaml, b.yaml]\n")
    write("a.yaml", "include: [shared.yaml]\n")
    write("b.yaml", "include: [./shared.yaml]\n")
    write("shared.yaml", "{}\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == (
        f"b.yaml:1: include[0] (b.yaml): {config_dir / 'shared.yaml'} is already included (circular or repeated include)"
    )


def test_include_path_expands_variables_and_home(write: Write, load: Load, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "extra").mkdir(parents=True)
    (home / "extra" / "x.yaml").write_text("service: {name: from-home}\n")
    write("config.yaml", "plugin_roots: [plugins]\ninclude: ['~/${SUB}/x.yaml']\n")
    config = load({"HOME": str(home), "SUB": "extra"})
    assert config.service.name == "from-home"
    assert config.files[1] == home / "extra" / "x.yaml"


def test_include_with_an_unset_variable_is_an_error(write: Write, load: Load) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude:\n  - ${NOPE}/x.yaml\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == "config.yaml:3: include[0]: environment variable ${NOPE} is not set"


def test_maps_deep_merge_and_later_scalar_wins(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        """\
        plugin_roots: [plugins]
        include: [more.yaml]
        service: {name: first, log_level: debug}
        api: {enabled: true, max_concurrent_sync: 3}
        """,
    )
    write("more.yaml", "service: {name: second}\napi: {max_concurrent_sync: 7}\n")
    config = load()
    assert (config.service.name, config.service.log_level) == ("second", "debug")
    assert (config.api.enabled, config.api.max_concurrent_sync) == (True, 7)


def test_plugin_entry_is_replaced_whole_by_a_later_file(
    write: Write, load: Load, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        "config.yaml",
        """\
        plugin_roots: [plugins]
        include: [plugins.yaml]
        plugins:
          echo: {enabled: true, parallelism: 1, config: {greeting: hi}}
          other: {enabled: false}
        """,
    )
    write("plugins.yaml", "plugins:\n  echo: {enabled: false}\n")
    with caplog.at_level(logging.INFO, logger="ductile.config"):
        config = load()
    echo = config.plugins["echo"]
    assert (echo.enabled, echo.parallelism, echo.config) == (False, None, {})
    assert echo.source_file == "plugins.yaml"
    assert config.plugins["other"].source_file == "config.yaml"
    assert "plugins.echo from config.yaml replaced by plugins.yaml" in caplog.messages


def test_listed_lists_append_and_drop_exact_duplicate_scalars(
    write: Write, load: Load, config_dir: Path
) -> None:
    (config_dir / "more-plugins").mkdir()
    write(
        "config.yaml",
        """\
        plugin_roots: [plugins]
        include: [extra.yaml]
        api:
          allowed_origins: ["https://a", "https://b"]
          auth: {tokens: [{secret_ref: one, scopes: []}]}
        """,
    )
    write(
        "extra.yaml",
        """\
        plugin_roots: [plugins, more-plugins]
        api:
          allowed_origins: ["https://b", "https://c"]
          auth: {tokens: [{secret_ref: two, scopes: []}]}
        """,
    )
    config = load()
    assert config.plugin_roots == [config_dir / "plugins", config_dir / "more-plugins"]
    assert config.api.allowed_origins == ["https://a", "https://b", "https://c"]
    assert [t.secret_ref for t in config.api.tokens] == ["one", "two"]


def test_flat_webhooks_list_merges_with_endpoints_from_other_files(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        "plugin_roots: [plugins]\ninclude: [webhooks.yaml]\nplugins: {echo: {enabled: true}}\n"
        "webhooks: {listen: '127.0.0.1:9100', endpoints: [{path: /b, plugin: echo, secret_ref: s, signature_header: X}]}\n",
    )
    write("webhooks.yaml", "webhooks:\n  - {path: /a, plugin: echo, secret_ref: s, signature_header: X}\n")
    config = load()
    assert config.webhooks.listen == "127.0.0.1:9100"
    assert [e.path for e in config.webhooks.endpoints] == ["/b", "/a"]


def test_later_empty_state_path_does_not_clear_an_earlier_one(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [x.yaml]\nstate: {path: db/main.db}\n")
    write("x.yaml", "state: {path: ''}\n")
    assert load().state_path == config_dir / "db/main.db"


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("service: {admission: {fail_on_drift: true}}", "service.admission"),
        ("service: {strict_mode: true}", "service.strict_mode"),
        ("service: {allow_symlinks: true}", "service.allow_symlinks"),
        ("service: {plugin_env_passthrough: [TZ]}", "service.plugin_env_passthrough"),
        ("service: {durability: normal}", "service.durability"),
        ("secrets: {vault_file: other.age}", "secrets.vault_file"),
    ],
)
def test_root_only_key_in_an_include_is_ignored_with_a_warning(
    write: Write, load: Load, config_dir: Path, snippet: str, key: str
) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [inc/x.yaml]\n")
    write("inc/x.yaml", snippet + "\n")
    config = load()
    assert f"inc/x.yaml: {key} may only be set in the root config.yaml (ignored)" in [
        w.message for w in config.warnings
    ]
    assert config.service.admission == {}
    assert config.service.durability == "full"
    assert config.service.plugin_env_passthrough == []
    assert config.secrets.vault_file == config_dir / "vault.age"


def test_root_only_keys_are_honoured_in_the_root(write: Write, load: Load, config_dir: Path) -> None:
    write(
        "config.yaml",
        """\
        plugin_roots: [plugins]
        service:
          durability: normal
          admission: {validate_config_on_boot: true}
          plugin_env_passthrough: [TZ]
        secrets: {vault_file: other.age, age_key_file: ~/key.txt}
        """,
    )
    config = load({"HOME": "/home/op"})
    assert config.service.durability == "normal"
    assert config.service.admission == {"validate_config_on_boot": True}
    assert config.service.plugin_env_passthrough == ["TZ"]
    assert config.secrets.vault_file == config_dir / "other.age"
    assert config.secrets.age_key_file == Path("/home/op/key.txt")


def test_pipeline_defined_in_two_files_is_an_error(write: Write, load: Load) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [p.yaml]\npipelines: [{name: build}]\n")
    write("p.yaml", "pipelines: [{name: build}]\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == 'p.yaml:1: pipeline "build" is defined twice (config.yaml, p.yaml)'


def test_webhook_path_defined_twice_is_an_error(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        "plugin_roots: [plugins]\ninclude: [webhooks.yaml]\nwebhooks: {endpoints: [{path: /p}]}\n",
    )
    write("webhooks.yaml", "webhooks: {endpoints: [{path: /p}]}\n")
    with pytest.raises(ConfigError) as error:
        load()
    # Every load error is reported together (config.md §5): the duplicate first, then each
    # endpoint's own missing keys.
    lines = str(error.value).splitlines()
    assert lines[0] == 'webhooks.yaml:1: webhook path "/p" is defined twice (config.yaml, webhooks.yaml)'
    assert 'config.yaml:3: webhook endpoint "/p": plugin is required' in lines


def test_included_files_and_locations_are_recorded_for_later_messages(write: Write, load: Load) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [p.yaml]\n")
    write("p.yaml", "pipelines:\n  - name: a\n  - name: b\n    steps: []\n")
    config = load()
    assert config.location("pipelines[1].steps") == "p.yaml:4"
    assert config.location("pipelines[1].steps[0]") == "p.yaml:4"
