"""``config show|get|set`` below the CLI (config.md §9): the path grammar, redaction at any depth,
effective values with their sources, the file an edit goes to, and an edit that keeps comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductile.config.editing import ConfigEditFailed, parse_flow_value, set_key, target_file
from ductile.config.keypaths import KeyPathError, lookup, parse_key_path
from ductile.config.redaction import REDACTED
from ductile.config.resolved import Source, effective_plugin, resolved_document
from tests.unit.config.conftest import Load, Write

ROOT = """\
# the gateway's root file
service:
  name: demo   # shown in logs
  tick_interval: 30s
plugin_roots: [plugins]
include: [plugins.yaml]
"""
PLUGINS = """\
plugins:
  echo:
    enabled: true
    # retried a little more than the default
    retry: {max_attempts: 5}
    config:
      nested: {deeper: [{client_secret: s3cr3t, password_ref: db-pass, url: http://x}]}
"""


@pytest.mark.parametrize(("text", "path"), [
    ("service.name", ("service", "name")),
    ("api.auth.tokens[0].scopes[1]", ("api", "auth", "tokens", 0, "scopes", 1)),
    ("plugin:echo.retry.max_attempts", ("plugins", "echo", "retry", "max_attempts")),
    ("plugin:echo", ("plugins", "echo")),
])
def test_paths_take_dots_list_indexes_and_the_plugin_prefix(text: str, path: tuple[object, ...]) -> None:
    assert parse_key_path(text) == path


@pytest.mark.parametrize("text", ["a..b", "a[x]", "plugin:", "a.b]"])
def test_a_malformed_path_is_refused(text: str) -> None:
    with pytest.raises(KeyPathError):
        parse_key_path(text)


def test_a_missing_key_names_what_its_parent_has() -> None:
    document = {"plugins": {"echo": {"enabled": True, "config": {}, "schedules": []}}}
    with pytest.raises(KeyPathError) as caught:
        lookup(document, parse_key_path("plugins.echo.enabeld"))
    assert str(caught.value) == 'no such key "plugins.echo.enabeld" (plugins.echo has: config, enabled, schedules)'


def test_show_redacts_at_any_depth_and_keeps_secret_refs(write: Write, load: Load) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    shown = resolved_document(load())
    item = shown["plugins"]["echo"]["config"]["nested"]["deeper"][0]
    assert item == {"client_secret": REDACTED, "password_ref": "db-pass", "url": "http://x"}


def test_show_fills_in_defaults_in_the_duration_grammar(write: Write, load: Load) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    service = resolved_document(load())["service"]
    assert (service["tick_interval"], service["shutdown_grace"], service["durability"]) == ("30s", "30s", "full")


def test_effective_values_say_explicit_with_their_file_or_default(write: Write, load: Load) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    config = load()
    effective = effective_plugin(config, config.plugins["echo"])
    assert effective["retry.max_attempts"].value == 5
    assert (effective["retry.max_attempts"].source, effective["retry.max_attempts"].file) == (
        Source.EXPLICIT, "plugins.yaml")
    assert effective["timeouts.poll"].human() == "1m (default)"
    assert effective["circuit_breaker.reset_after"].human() == "30m (default)"


def test_the_target_is_the_file_that_provides_the_key(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    config = load()
    assert target_file(config, parse_key_path("plugin:echo.retry.backoff_base")) == config_dir / "plugins.yaml"
    assert target_file(config, parse_key_path("service.name")) == config_dir / "config.yaml"
    assert target_file(config, parse_key_path("api.listen")) == config_dir / "config.yaml"


def test_set_keeps_comments_and_untouched_lines(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    target, after = set_key(load(), parse_key_path("plugin:echo.retry.max_attempts"), 7, dry_run=False)
    assert target == config_dir / "plugins.yaml"
    assert after.config.plugins["echo"].retry.max_attempts == 7
    assert (config_dir / "plugins.yaml").read_text() == PLUGINS.replace("max_attempts: 5", "max_attempts: 7")
    assert (config_dir / "plugins.yaml.bak").read_text() == PLUGINS


def test_a_new_key_is_added_under_its_section(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    set_key(load(), parse_key_path("service.log_level"), "debug", dry_run=False)
    text = (config_dir / "config.yaml").read_text()
    assert text.startswith("# the gateway's root file\nservice:\n  name: demo   # shown in logs\n")
    assert "  log_level: debug\n" in text


def test_a_dry_run_validates_the_edit_and_writes_nothing(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    _, after = set_key(load(), parse_key_path("service.name"), "other", dry_run=True)
    assert after.config.service.name == "other"
    assert (config_dir / "config.yaml").read_text() == ROOT
    assert not (config_dir / "config.yaml.bak").exists()
    with pytest.raises(ConfigEditFailed, match=r"^validation failed: .*tick_interval"):
        set_key(load(), parse_key_path("service.tick_interval"), "soon", dry_run=True)
    assert (config_dir / "config.yaml").read_text() == ROOT


def test_a_value_overridden_by_a_later_file_fails_and_is_restored(write: Write, load: Load,
                                                                   config_dir: Path) -> None:
    write("config.yaml", ROOT.replace("[plugins.yaml]", "[plugins.yaml, late.yaml]"))
    write("plugins.yaml", PLUGINS)
    write("late.yaml", "service: {name: late}\n")
    before = (config_dir / "config.yaml").read_text()
    config = load()
    # service.name's winning value is in late.yaml, so that is the target: setting it works
    assert target_file(config, parse_key_path("service.name")) == config_dir / "late.yaml"
    with pytest.raises(ConfigEditFailed) as caught:
        from ductile.config.editing import edit, set_in
        edit(config.source, config_dir / "config.yaml", lambda d: set_in(d, ("service", "name"), "x"),
             lambda after: (_ for _ in ()).throw(ConfigEditFailed("overridden")))
    assert str(caught.value) == "validation failed: overridden (restored config.yaml)"
    assert (config_dir / "config.yaml").read_text() == before


def test_values_are_yaml_flow_values() -> None:
    assert [parse_flow_value(t) for t in ("true", "42", '"42"', "[a, b]", "{k: v}", "5m")] == [
        True, 42, "42", ["a", "b"], {"k": "v"}, "5m"]


def test_an_encrypted_file_is_refused(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOT)
    write("plugins.yaml", PLUGINS)
    config = load()
    (config_dir / "plugins.yaml").write_bytes(b"age-encryption.org/v1\n-> X25519 abc\n")
    with pytest.raises(ConfigEditFailed, match=r"plugins\.yaml is encrypted"):
        set_key(config, parse_key_path("plugin:echo.enabled"), False, dry_run=False)



def test_a_set_of_a_variable_compares_the_template_and_a_failure_never_prints_a_secret(
        write: Write, load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDIT_NAME", "from-the-environment")
    write("config.yaml", ROOT.replace("[plugins.yaml]", "[plugins.yaml, late.yaml]") +
          "api:\n  auth:\n    tokens: [{token: early-secret-value, scopes: ['*']}]\n")
    write("plugins.yaml", PLUGINS)
    write("late.yaml", "api:\n  auth:\n    tokens: [{token: late-secret-value, scopes: ['*']}]\n")
    # The file holds the template, so the template is what the set is checked against
    _, after = set_key(load(), parse_key_path("service.name"), "${EDIT_NAME}", dry_run=True)
    assert after.config.service.name == "from-the-environment"
    # Token lists append across files, so the set cannot win; the failure names the key, not the tokens
    with pytest.raises(ConfigEditFailed) as caught:
        set_key(load(), parse_key_path("api.auth.tokens"), [{"token": "only-this", "scopes": ["*"]}], dry_run=True)
    assert str(caught.value) == ('validation failed: the effective value of "api.auth.tokens" is '
                                 "[{'token': '[REDACTED]', 'scopes': ['*']}, {'token': '[REDACTED]', 'scopes': ['*']}], "
                                 "not the value set (a later file overrides it)")
