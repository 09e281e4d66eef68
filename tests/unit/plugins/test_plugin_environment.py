"""The plugin environment (plugins.md §4): allowlist plus passthrough names, only when set."""

from __future__ import annotations

from ductile.plugins.environment import BASE_ENV_ALLOWLIST, passthrough_errors, plugin_environment


def test_allowlist_matches_the_spec() -> None:
    spec = (
        "PATH HOME TZ LANG LANGUAGE TMPDIR LC_ALL LC_CTYPE LC_NUMERIC LC_TIME LC_COLLATE LC_MONETARY "
        "LC_MESSAGES LC_PAPER LC_NAME LC_ADDRESS LC_TELEPHONE LC_MEASUREMENT LC_IDENTIFICATION"
    )
    assert spec.split() == list(BASE_ENV_ALLOWLIST)


def test_only_allowlisted_and_passthrough_names_that_are_set_reach_the_plugin() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/ductile",
        "LC_ALL": "C.UTF-8",
        "TZ": "",
        "AWS_SECRET_ACCESS_KEY": "leak",
        "DUCTILE_VAULT_KEY": "leak",
        "GITHUB_TOKEN": "passed on purpose",
    }
    env = plugin_environment(environ, ["GITHUB_TOKEN", "NOT_SET_ANYWHERE"])
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/ductile",
        "TZ": "",
        "LC_ALL": "C.UTF-8",
        "GITHUB_TOKEN": "passed on purpose",
    }


def test_empty_environment_gives_an_empty_plugin_environment() -> None:
    assert plugin_environment({}, ["PATH"]) == {}


def test_invalid_passthrough_names_never_pass() -> None:
    environ = {"BAD-NAME": "x", "1ST": "y", "OK_NAME": "z"}
    assert plugin_environment(environ, ["BAD-NAME", "1ST", "OK_NAME"]) == {"OK_NAME": "z"}


def test_invalid_passthrough_names_are_config_errors_naming_the_index() -> None:
    assert passthrough_errors(["GOOD", "bad-name", "_ok", "9lives", ""]) == [
        "service.plugin_env_passthrough[1]: invalid environment variable name",
        "service.plugin_env_passthrough[3]: invalid environment variable name",
        "service.plugin_env_passthrough[4]: invalid environment variable name",
    ]
