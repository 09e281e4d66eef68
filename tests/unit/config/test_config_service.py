"""Top-level keys, paths and `service.*` (spec config.md §3.3, §4.1, §4.2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.config import Config, ConfigError, ServiceConfig

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

ROOTS = "plugin_roots: [plugins]\n"


def _error(write: Write, load: Load, text: str) -> str:
    write("config.yaml", text)
    with pytest.raises(ConfigError) as error:
        load()
    return str(error.value)


def test_defaults_apply_to_every_service_key(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS)
    assert load().service == ServiceConfig(
        name="ductile",
        tick_interval=60.0,
        log_level="info",
        log_format="json",
        durability="full",
        max_workers=max(1, (os.cpu_count() or 1) - 1),
        shutdown_grace=30.0,
        hook_max_depth=4,
        dedupe_ttl=86400.0,
        job_queue_retention=86400.0,
        job_log_retention=2_592_000.0,
        job_transitions_retention=2_592_000.0,
        job_attempts_retention=2_592_000.0,
        breaker_transitions_retention=7_776_000.0,
        allow_symlinks=False,
        plugin_env_passthrough=[],
        admission={},
        strict_mode=False,
    )


def test_explicit_service_values_are_parsed(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS
        + """\
service:
  name: edge-1
  tick_interval: 500ms
  log_level: warn
  log_format: text
  max_workers: 3
  shutdown_grace: 1m
  hook_max_depth: 0
  dedupe_ttl: 1h
  job_queue_retention: 2d
  job_log_retention: 0s
  breaker_transitions_retention: 1w
""",
    )
    service = load().service
    assert (service.name, service.tick_interval, service.log_level, service.log_format) == (
        "edge-1",
        0.5,
        "warn",
        "text",
    )
    assert (service.max_workers, service.shutdown_grace, service.hook_max_depth) == (3, 60.0, 4)
    assert (service.dedupe_ttl, service.job_queue_retention, service.job_log_retention) == (
        3600.0,
        172800.0,
        0.0,
    )
    assert service.breaker_transitions_retention == 604800.0


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("tick_interval: 50ms", "config.yaml:2: service.tick_interval must be at least 100ms"),
        ("tick_interval: 30", 'config.yaml:2: service.tick_interval: invalid duration "30": missing unit'),
        ("log_level: verbose", "config.yaml:2: service.log_level must be one of debug, info, warn, error"),
        ("log_format: xml", 'config.yaml:2: service.log_format must be "json" or "text"'),
        ("durability: off", 'config.yaml:2: service.durability must be "full" or "normal"'),
        ("max_workers: 0", "config.yaml:2: service.max_workers must be > 0"),
        ("hook_max_depth: -1", "config.yaml:2: service.hook_max_depth must be >= 0"),
        (
            "shutdown_grace: -5s",
            'config.yaml:2: service.shutdown_grace: invalid duration "-5s": must not be negative',
        ),
        (
            "dedupe_ttl: 48h, job_queue_retention: 24h",
            "config.yaml:2: service.job_queue_retention (24h) must be >= service.dedupe_ttl (48h)",
        ),
        (
            "plugin_env_passthrough: [TZ, BAD-NAME]",
            "config.yaml:2: service.plugin_env_passthrough[1]: invalid environment variable name",
        ),
    ],
)
def test_bad_service_values_have_exact_messages(write: Write, load: Load, snippet: str, message: str) -> None:
    assert _error(write, load, ROOTS + "service: {" + snippet + "}\n") == message


def test_zero_retention_disables_the_queue_retention_check(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "service: {dedupe_ttl: 48h, job_queue_retention: 0s}\n")
    assert load().service.job_queue_retention == 0.0


def test_wrong_type_names_the_key(write: Write, load: Load) -> None:
    assert _error(write, load, ROOTS + "service:\n  max_workers: abc\n") == (
        "config.yaml:3: service.max_workers: expected an integer, got a string"
    )


def test_yes_is_not_a_boolean(write: Write, load: Load) -> None:
    assert _error(write, load, ROOTS + "service:\n  allow_symlinks: yes\n") == (
        "config.yaml:3: service.allow_symlinks: expected true or false, got a string"
    )


def test_non_kebab_service_name_is_a_warning(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "service: {name: My_Gateway}\n")
    config = load()
    assert config.service.name == "My_Gateway"
    assert [w.field for w in config.warnings] == ["service.name"]


def test_plugin_roots_are_required(write: Write, load: Load) -> None:
    assert (
        _error(write, load, "service: {name: x}\n")
        == "config.yaml: plugin_roots is required (at least one directory)"
    )
    assert _error(write, load, "plugin_roots: []\n") == (
        "config.yaml:1: plugin_roots is required (at least one directory)"
    )


def test_a_blank_plugin_root_is_dropped_rather_than_read_as_the_config_dir(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "plugin_roots: [plugins, '', '  ', '${EMPTY}']\n")
    assert load({"EMPTY": ""}).plugin_roots == [config_dir / "plugins"]
    assert _error(write, load, "plugin_roots: ['']\n") == (
        "config.yaml:1: plugin_roots is required (at least one directory)"
    )


def test_plugin_root_that_is_not_a_directory_is_an_error(write: Write, load: Load, config_dir: Path) -> None:
    write("afile", "")
    assert _error(write, load, "plugin_roots:\n  - plugins\n  - missing\n") == (
        f"config.yaml:3: plugin_roots[1]: {config_dir / 'missing'} is not a directory"
    )
    assert _error(write, load, "plugin_roots: [afile]\n") == (
        f"config.yaml:1: plugin_roots[0]: {config_dir / 'afile'} is not a directory"
    )


def test_relative_paths_resolve_against_the_config_dir_even_from_an_include(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", "include: [sub/x.yaml]\n")
    write("sub/x.yaml", "plugin_roots: [plugins]\nstate: {path: db/state.db}\n")
    config = load()
    assert config.plugin_roots == [config_dir / "plugins"]
    assert config.state_path == config_dir / "db/state.db"


def test_home_is_expanded_in_path_keys_but_tilde_user_is_not(
    write: Write, load: Load, config_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "roots").mkdir(parents=True)
    write("config.yaml", "plugin_roots: ['~/roots']\nstate: {path: '~op/db'}\n")
    config = load({"HOME": str(home)})
    assert config.plugin_roots == [home / "roots"]
    assert config.state_path == config_dir / "~op/db"


def test_state_path_defaults_and_database_path_alias(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOTS)
    assert load().state_path == config_dir / "data/ductile.db"
    write("config.yaml", ROOTS + "database: {path: /var/lib/ductile/old.db}\n")
    assert load().state_path == Path("/var/lib/ductile/old.db")
    write("config.yaml", ROOTS + "database: {path: old.db}\nstate: {path: new.db}\n")
    assert load().state_path == config_dir / "new.db"


def test_vault_file_defaults_to_the_config_dir(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOTS)
    config = load()
    assert config.secrets.vault_file == config_dir / "vault.age"
    assert config.secrets.age_key_file is None


def test_symlinked_config_file_is_refused_unless_allowed(
    write: Write, load: Load, config_dir: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("service: {name: linked}\n")
    (config_dir / "linked.yaml").symlink_to(real)
    write("config.yaml", ROOTS + "include: [linked.yaml]\n")
    assert _error(write, load, ROOTS + "include: [linked.yaml]\n") == (
        f"symlink not allowed: {config_dir / 'linked.yaml'} (set service.allow_symlinks: true to permit)"
    )
    write("config.yaml", ROOTS + "include: [linked.yaml]\nservice: {allow_symlinks: true}\n")
    config = load()
    assert config.service.name == "linked"
    assert [w.field for w in config.warnings] == ["service.allow_symlinks"]
