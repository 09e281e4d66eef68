"""`${VAR}` interpolation and .env files (spec config.md §3.1, §3.2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.config import Config, ConfigError

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

ROOTS = "plugin_roots: [plugins]\n"


def test_variables_are_substituted_inside_strings(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "service: {name: 'gw-${SITE}'}\n")
    assert load({"SITE": "lab"}).service.name == "gw-lab"


def test_env_value_with_yaml_structure_stays_one_string(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {enabled: false, config: {text: '${PAYLOAD}'}}\n")
    config = load({"PAYLOAD": "a\nkey: x"})
    assert config.plugins["echo"].config == {"text": "a\nkey: x"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("8", 8), ("1.5", 1.5), ("null", None), ("yes", "yes"), ("[1, 2]", "[1, 2]"), ("", "")],
)
def test_a_scalar_that_is_exactly_one_variable_takes_its_yaml_type(
    write: Write, load: Load, value: str, expected: object
) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {config: {v: '${V}'}}\n")
    assert load({"V": value}).plugins["echo"].config["v"] == expected


def test_typed_substitution_feeds_typed_keys(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "api: {enabled: '${API_ON}', max_concurrent_sync: '${SYNC}'}\n")
    config = load({"API_ON": "true", "SYNC": "4"})
    assert (config.api.enabled, config.api.max_concurrent_sync) == (True, 4)


def test_a_scalar_with_more_than_the_variable_stays_a_string(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {config: {v: '${N}0'}}\n")
    assert load({"N": "8"}).plugins["echo"].config["v"] == "80"


def test_double_dollar_writes_a_literal_reference_and_bare_dollar_is_untouched(
    write: Write, load: Load
) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {enabled: true, config: {a: '$${HOME}', b: '$HOME'}}\n")
    assert load({"HOME": "/h"}).plugins["echo"].config == {"a": "${HOME}", "b": "$HOME"}


def test_keys_are_never_interpolated(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {config: {'${K}': v}}\n")
    assert load({"K": "x"}).plugins["echo"].config == {"${K}": "v"}


def test_unset_variable_in_an_enabled_plugin_config_is_an_error(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS + "plugins:\n  echo:\n    enabled: true\n    config:\n      deep: [{url: '${URL}'}]\n",
    )
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == 'config.yaml:6: plugin "echo": environment variable ${URL} is not set'


def test_unset_variable_in_a_disabled_plugin_config_stays_literal_with_a_warning(
    write: Write, load: Load
) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {config: {url: '${URL}'}}\n")
    config = load()
    assert config.plugins["echo"].config == {"url": "${URL}"}
    [warning] = [w for w in config.warnings if w.field == "plugins.echo.config.url"]
    assert warning.message == "environment variable ${URL} is not set; the literal is kept"
    assert (warning.file, warning.line) == ("config.yaml", 3)


def test_unset_variable_of_a_replaced_plugin_entry_is_not_reported(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS + "include: [p.yaml]\nplugins:\n  echo: {enabled: true, config: {url: '${URL}'}}\n",
    )
    write("p.yaml", "plugins:\n  echo: {enabled: true, config: {url: 'http://x'}}\n")
    config = load()
    assert config.plugins["echo"].config == {"url": "http://x"}
    assert not [w for w in config.warnings if "URL" in w.message]


def test_unset_variable_in_a_token_is_an_error(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "api:\n  auth:\n    tokens:\n      - {token: '${TOKEN}', scopes: ['*']}\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == "config.yaml:5: api.auth.tokens[0]: environment variable ${TOKEN} is not set"


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("state: {path: '${DATA}/db'}", "state.path"),
        ("database: {path: '${DATA}/db'}", "database.path"),
        ("api: {management_socket: '${DATA}/s.sock'}", "api.management_socket"),
    ],
)
def test_unset_variable_in_a_path_key_is_an_error(write: Write, load: Load, snippet: str, key: str) -> None:
    write("config.yaml", ROOTS + snippet + "\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"config.yaml:2: {key}: environment variable ${{DATA}} is not set"


def test_unset_variable_in_a_plugin_root_is_an_error(write: Write, load: Load) -> None:
    write("config.yaml", "plugin_roots:\n  - plugins\n  - ${ROOT}\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == "config.yaml:3: plugin_roots[1]: environment variable ${ROOT} is not set"


def test_env_file_is_parsed_and_feeds_interpolation(write: Write, load: Load, config_dir: Path) -> None:
    write(
        ".env",
        """\
        # comment
        export SITE=lab
        QUOTED="two words"
        SINGLE='x=y'
          SPACED  =  padded
        EMPTY=
        """,
    )
    write("config.yaml", ROOTS + "environment_vars: {include: [.env]}\nservice: {name: 'gw-${SITE}'}\n")
    environ: dict[str, str] = {}
    config = load(environ)
    assert config.service.name == "gw-lab"
    assert environ == {"SITE": "lab", "QUOTED": "two words", "SINGLE": "x=y", "SPACED": "padded", "EMPTY": ""}
    assert config.files == [config_dir / "config.yaml", config_dir / ".env"]


def test_env_file_never_overwrites_an_existing_variable(write: Write, load: Load) -> None:
    write("vars.env", "SITE=from-file\nOTHER=1\n")
    write("config.yaml", ROOTS + "environment_vars: {include: [vars.env]}\nservice: {name: '${SITE}'}\n")
    environ = {"SITE": "from-process"}
    config = load(environ)
    assert config.service.name == "from-process"
    assert environ == {"SITE": "from-process", "OTHER": "1"}


def test_env_file_is_relative_to_its_config_file_and_applies_before_that_file_is_interpolated(
    write: Write, load: Load
) -> None:
    write("config.yaml", ROOTS + "include: [sub/x.yaml]\n")
    write("sub/x.yaml", "environment_vars: {include: [x.env]}\nservice: {name: '${NAME}'}\n")
    write("sub/x.env", "NAME=from-sub\n")
    assert load().service.name == "from-sub"


@pytest.mark.parametrize(("line", "number"), [("NOEQUALS", 2), ("=value", 2), ("export", 2)])
def test_bad_env_line_names_file_and_line(write: Write, load: Load, line: str, number: int) -> None:
    write("bad.env", f"GOOD=1\n{line}\n")
    write("config.yaml", ROOTS + "environment_vars: {include: [bad.env]}\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"invalid env line {number} in bad.env"


def test_missing_env_file_is_an_error(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOTS + "environment_vars:\n  include: [a.env, missing.env]\n")
    write("a.env", "A=1\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == (
        f"config.yaml:3: environment_vars.include[1]: file not found: {config_dir / 'missing.env'}"
    )


def test_env_file_path_expands_home_and_variables(write: Write, load: Load, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "lab.env").write_text("NAME=home-env\n")
    write(
        "config.yaml",
        ROOTS + "environment_vars: {include: ['~/secrets/${ENV_NAME}.env']}\nservice: {name: '${NAME}'}\n",
    )
    assert load({"HOME": str(home), "ENV_NAME": "lab"}).service.name == "home-env"


def test_age_encrypted_env_file_without_a_key_is_an_error(write: Write, load: Load, config_dir: Path) -> None:
    write("secret.env", "age-encryption.org/v1\n")
    write("config.yaml", ROOTS + "environment_vars: {include: [secret.env]}\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == f"config.yaml:2: {config_dir / 'secret.env'} is age-encrypted but no age key is available"


# --- environment values stay out of what is shown and logged (issue 9 item 17) --------------------


def test_snapshot_keeps_the_template_and_display_masks_the_value_of_every_interpolated_scalar(
    write: Write, load: Load
) -> None:
    from ductile.config.redaction import display_document, snapshot_document

    write("config.yaml", ROOTS + "include: [more.yaml]\n"
          "service: {name: 'gw-${SITE}', max_workers: '${WORKERS}'}\n"
          "plugins:\n  echo: {enabled: false, config: {endpoint: 'https://${HOST}/hook', label: plain}}\n"
          "webhooks:\n  listen: '127.0.0.1:9'\n  endpoints:\n"
          "    - {path: '/in/${SITE}', plugin: echo, secret_ref: hook, signature_header: X}\n")
    write("more.yaml", "plugins:\n  db: {enabled: false, config: {dsn: 'postgres://app:${PW}@db/app', n: 1}}\n"
          "webhooks:\n  - {path: /flat, plugin: db, secret_ref: '${REF}', signature_header: X}\n")
    config = load({"SITE": "lab-7q", "WORKERS": "3", "HOST": "canary.example", "PW": "hunter2", "REF": "hook2"})
    assert config.service.max_workers == 3 and config.plugins["db"].config["dsn"] == "postgres://app:hunter2@db/app"

    snapshot = snapshot_document(config)
    assert snapshot["service"] == {"name": "gw-${SITE}", "max_workers": "${WORKERS}"}
    assert snapshot["plugins"]["echo"]["config"] == {"endpoint": "https://${HOST}/hook", "label": "plain"}
    assert snapshot["plugins"]["db"]["config"] == {"dsn": "postgres://app:${PW}@db/app", "n": 1}
    assert [e["path"] for e in snapshot["webhooks"]["endpoints"]] == ["/in/${SITE}", "/flat"]
    assert snapshot["webhooks"]["endpoints"][1]["secret_ref"] == "${REF}"

    shown = display_document(config)
    assert shown["service"] == {"name": "[REDACTED]", "max_workers": "[REDACTED]"}
    assert shown["plugins"]["echo"]["config"] == {"endpoint": "[REDACTED]", "label": "plain"}
    assert shown["plugins"]["db"]["config"] == {"dsn": "[REDACTED]", "n": 1}
    assert [e["path"] for e in shown["webhooks"]["endpoints"]] == ["[REDACTED]", "/flat"]
    for document in (snapshot, shown):
        for value in ("lab-7q", "canary.example", "hunter2", "hook2"):
            assert value not in repr(document)


def test_a_replaced_plugin_entry_forgets_the_templates_of_the_entry_it_replaced(write: Write, load: Load) -> None:
    from ductile.config.redaction import display_document, snapshot_document

    write("config.yaml", ROOTS + "include: [later.yaml]\nplugins:\n  echo: {config: {url: '${URL}'}}\n")
    write("later.yaml", "plugins:\n  echo: {config: {url: 'https://fixed.example'}}\n")
    config = load({"URL": "https://from-env.example"})
    assert config.interpolated == {}
    assert snapshot_document(config)["plugins"]["echo"]["config"]["url"] == "https://fixed.example"
    assert display_document(config)["plugins"]["echo"]["config"]["url"] == "https://fixed.example"


def test_undefined_variables_and_escapes_are_not_environment_values(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "service: {name: 'a-$${LIT}'}\nplugins:\n  echo: {config: {v: '${NOPE}'}}\n")
    assert load({}).interpolated == {}
