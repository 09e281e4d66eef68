"""`plugins.<name>.*` (spec config.md §4.4, §4.6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.config import BreakerConfig, Config, ConfigError, PluginEntry, RetryConfig

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

ROOTS = "plugin_roots: [plugins]\nservice: {max_workers: 4}\n"


def _plugin(write: Write, load: Load, body: str, name: str = "echo") -> PluginEntry:
    write("config.yaml", ROOTS + f"plugins:\n  {name}: {{{body}}}\n")
    return load().plugins[name]


def _error(write: Write, load: Load, body: str, name: str = "echo") -> str:
    write("config.yaml", ROOTS + f"plugins:\n  {name}: {{{body}}}\n")
    with pytest.raises(ConfigError) as error:
        load()
    return str(error.value)


def test_omitted_fields_take_defaults_and_enabled_defaults_to_false(write: Write, load: Load) -> None:
    assert _plugin(write, load, "") == PluginEntry(name="echo", source_file="config.yaml")


def test_null_entry_is_a_disabled_plugin(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo:\n")
    assert load().plugins["echo"] == PluginEntry(name="echo", source_file="config.yaml")


def test_explicit_fields_are_parsed(write: Write, load: Load) -> None:
    entry = _plugin(
        write,
        load,
        "enabled: true, uses: echo-base, config: {a: 1}, retry: {max_attempts: 2, backoff_base: 10s},"
        " timeouts: {poll: 5m, sync: 15s}, circuit_breaker: {threshold: 5, reset_after: 1h},"
        " parallelism: 2, max_outstanding_polls: 3, notify_on_complete: true, vault_principal: echo-prod,"
        " requires_vault: true, schedules: [{every: 5m}]",
    )
    assert entry == PluginEntry(
        name="echo",
        enabled=True,
        uses="echo-base",
        config={"a": 1},
        retry=RetryConfig(max_attempts=2, backoff_base=10.0),
        timeouts={"poll": 300.0, "sync": 15.0},
        circuit_breaker=BreakerConfig(threshold=5, reset_after=3600.0),
        parallelism=2,
        max_outstanding_polls=3,
        notify_on_complete=True,
        vault_principal="echo-prod",
        requires_vault=True,
        schedules=[{"every": "5m"}],
        source_file="config.yaml",
    )


def test_zero_fields_inside_a_block_take_their_defaults(write: Write, load: Load) -> None:
    entry = _plugin(
        write,
        load,
        "enabled: true, retry: {max_attempts: 0, backoff_base: 0s}, circuit_breaker: {threshold: 0},"
        " timeouts: {poll: 0s}",
    )
    assert (entry.retry, entry.circuit_breaker, entry.timeouts) == (RetryConfig(), BreakerConfig(), {})


def test_timeout_for_uses_override_then_command_default_then_poll_default(write: Write, load: Load) -> None:
    entry = _plugin(write, load, "enabled: true, timeouts: {sync: 15s, handle: 3m}")
    assert entry.timeouts == {"sync": 15.0, "handle": 180.0}
    assert [entry.timeout_for(c) for c in ("sync", "handle", "poll", "health", "init", "other")] == [
        15.0,
        180.0,
        60.0,
        10.0,
        30.0,
        60.0,
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("enabled: true, retry: {max_attempts: -1}", 'plugin "echo": retry.max_attempts must be >= 1'),
        (
            "enabled: true, retry: {backoff_base: -5s}",
            'plugins.echo.retry.backoff_base: invalid duration "-5s": must not be negative',
        ),
        (
            "enabled: true, timeouts: {poll: 30}",
            'plugins.echo.timeouts.poll: invalid duration "30": missing unit',
        ),
        ("enabled: true, timeouts: {sync: soon}", 'plugins.echo.timeouts.sync: invalid duration "soon"'),
        (
            "enabled: true, circuit_breaker: {threshold: -2}",
            'plugin "echo": circuit_breaker.threshold must be >= 1',
        ),
        (
            "enabled: true, circuit_breaker: {reset_after: 10}",
            'plugins.echo.circuit_breaker.reset_after: invalid duration "10": missing unit',
        ),
        (
            "enabled: true, parallelism: 5",
            'plugin "echo": parallelism 5 must be between 1 and service.max_workers (4)',
        ),
        (
            "enabled: true, parallelism: 0",
            'plugin "echo": parallelism 0 must be between 1 and service.max_workers (4)',
        ),
        ("enabled: true, max_outstanding_polls: 0", 'plugin "echo": max_outstanding_polls must be >= 1'),
        (
            "enabled: true, schedule: {every: 5m}",
            'plugin "echo": schedule is no longer supported; use schedules[]',
        ),
        (
            "enabled: true, run_as: nobody",
            'plugin "echo": run_as (privilege separation) is not supported; '
            "remove it to run the plugin as the gateway user",
        ),
        (
            "enabled: true, vault_principal: Echo_Prod",
            'plugin "echo": vault_principal "Echo_Prod" is not a valid principal name',
        ),
    ],
)
def test_bad_values_on_an_enabled_plugin_have_exact_messages(
    write: Write, load: Load, body: str, message: str
) -> None:
    assert _error(write, load, body) == f"config.yaml:4: {message}"


def test_underscore_name_requiring_the_vault_needs_a_principal(write: Write, load: Load) -> None:
    assert _error(write, load, "enabled: true, requires_vault: true", name="x_y") == (
        'config.yaml:4: plugin "x_y": name is not a valid principal name; set plugins.x_y.vault_principal'
    )
    entry = _plugin(write, load, "enabled: true, requires_vault: true, vault_principal: x-y", name="x_y")
    assert entry.vault_principal == "x-y"


def test_disabled_plugin_skips_validation_but_not_types(write: Write, load: Load) -> None:
    entry = _plugin(
        write, load, "parallelism: 99, schedule: {every: 5m}, timeouts: {poll: 30}, vault_principal: BAD"
    )
    assert (entry.enabled, entry.parallelism, entry.timeouts, entry.vault_principal) == (
        False,
        None,
        {},
        "BAD",
    )
    assert (
        _error(write, load, "enabled: 'no'")
        == "config.yaml:4: plugins.echo.enabled: expected true or false, got a string"
    )
    assert _error(write, load, "retry: {max_attempts: many}") == (
        "config.yaml:4: plugins.echo.retry.max_attempts: expected an integer, got a string"
    )


def test_run_as_on_a_disabled_plugin_is_a_warning(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo: {run_as: nobody}\n")
    [warning] = load().warnings
    assert warning.message == "config: plugins.echo.run_as is not supported; ignored"


def test_flat_timeout_and_max_attempts_are_unknown_keys(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "plugins:\n  echo:\n    timeout: 30s\n    max_attempts: 3\n")
    warnings = load().warnings
    assert [(w.field, w.message, w.line) for w in warnings] == [
        ("plugins.echo.timeout", "config: key ignored (not a known field)", 5),
        ("plugins.echo.max_attempts", "config: key ignored (not a known field)", 6),
    ]


def test_error_in_an_included_plugin_file_names_that_file_and_line(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "include: [plugins.d/echo.yaml]\n")
    write("plugins.d/echo.yaml", "plugins:\n  echo:\n    enabled: true\n    parallelism: 9\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == (
        'plugins.d/echo.yaml:4: plugin "echo": parallelism 9 must be between 1 and service.max_workers (4)'
    )
