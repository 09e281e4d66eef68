"""config.md's acceptance checklist, item by item: the test(s) that prove each one.

Tests named ``here::`` live in this file; they cover what no other test proved (or proved only in
part). Everything here runs the real CLI on tmp config dirs, or the loader directly; one daemon
boot (the literal-token item).

1. Discovery order `--config`/`--config-dir` → `$DUCTILE_CONFIG_DIR` → `~/.config/ductile` →
   `/etc/ductile`, the exact "no config found" error, both flags → exit 1:
   tests/unit/config/test_config_discovery.py (every step and message of find_config);
   here::test_discovery_order_and_its_errors_through_the_cli (the real CLI: exit 1, the exact
   stderr line and `--json` document, env beats home, a flag beats env);
   tests/integration/test_cli_jobs.py::test_config_flags_spellings_and_environment.
2. Includes merge in order (later scalar wins, lists append, `plugins.<n>` replaced whole);
   repeated/circular and missing include fail naming the file:
   tests/unit/config/test_config_includes.py (test_nested_includes_merge_depth_first_in_listed_order,
   test_directory_include_loads_yaml_files_sorted_and_skips_dotfiles,
   test_maps_deep_merge_and_later_scalar_wins, test_plugin_entry_is_replaced_whole_by_a_later_file,
   test_listed_lists_append_and_drop_exact_duplicate_scalars, test_circular_include_is_an_error,
   test_diamond_include_is_an_error, test_missing_include_names_the_including_file_and_absolute_path).
3. A root-only key in an include is ignored with a warning, fatal under `validate_config_on_boot`:
   tests/unit/config/test_config_includes.py::test_root_only_key_in_an_include_is_ignored_with_a_warning,
   tests/unit/runtime/test_config_check.py::test_a_root_only_key_in_an_include_is_fatal_under_validate_config_on_boot.
4. `${VAR}` post-parse (`\\nkey: x` stays one string), `${VAR}` alone keeps its YAML type, unset
   variable in an enabled plugin's config is an error: tests/unit/config/test_config_interpolation.py
   (test_env_value_with_yaml_structure_stays_one_string,
   test_a_scalar_that_is_exactly_one_variable_takes_its_yaml_type,
   test_unset_variable_in_an_enabled_plugin_config_is_an_error).
5. `.env` files: `export`, quotes, comments; a bad line names file and line; existing env not
   overwritten: tests/unit/config/test_config_interpolation.py (test_env_file_is_parsed_and_feeds_interpolation,
   test_bad_env_line_names_file_and_line, test_env_file_never_overwrites_an_existing_variable).
6. Every key of §4 has its default applied (via `config show` / `config show --effective`), each
   listed bad value has its exact message: here::test_every_section_4_default_is_shown_by_config_show,
   here::test_each_section_4_bad_value_has_its_exact_message (table over §4.1-§4.5),
   here::test_section_4_warnings_name_their_key, here::test_uses_of_an_undiscovered_plugin_is_refused,
   here::test_effective_parallelism_of_a_concurrency_unsafe_plugin_is_1 (was max_workers before);
   also tests/unit/config/test_config_service.py (each section's defaults as the typed Config;
   test_plugin_roots_are_required, test_plugin_root_that_is_not_a_directory_is_an_error),
   test_config_api.py, test_config_plugins.py, test_config_webhooks.py;
   `secret_ref "x" not found in vault`: tests/unit/config/test_secret_refs.py::test_not_found_in_vault,
   tests/integration/test_config_tokens.py::test_a_secret_ref_missing_from_the_vault_stops_boot.
   Not proven: relay `instances`/`remote_ingress` messages (relay is not in this release), and the
   §4.4 rule for `plugins.<n>.config` keys ending `_ref` (unknown secret → error, not granted →
   warning), which nothing checks yet.
7. An unknown key warns with file and path, stops boot under `validate_config_on_boot`:
   tests/unit/config/test_config_reporting.py::test_every_unknown_key_of_every_file_is_a_warning_with_file_and_path,
   tests/integration/test_config_check_cli.py::test_validate_config_on_boot_refuses_an_unknown_key.
8. `config lock` hashes every loaded file (included files, directory includes, env files), keeps
   the fingerprints of configured plugins, prunes the rest, version 2, atomic, 0600:
   tests/unit/app/test_config_lock.py (test_every_file_the_loader_reads_and_the_always_hashed_set_with_their_tiers,
   test_fingerprints_of_configured_plugins_are_carried_forward_and_the_rest_pruned),
   tests/integration/test_config_lock_cli.py, tests/unit/config/test_checksums_file.py;
   here::test_config_lock_hashes_directory_includes_and_env_files_and_replaces_the_lock_atomically.
9. A tampered `webhooks.yaml` fails every full load with `tampering detected`; an edited
   `plugins.yaml` is drift, fatal with `fail_on_drift` at boot (reload: the reload part):
   here::test_a_tampered_webhooks_yaml_fails_every_full_load (boot, config check/show/get,
   plugin lock, config token create — show, get, plugin lock and token create loaded it before);
   tests/integration/test_config_check_cli.py (test_config_check_exits_0_1_2_with_the_spec_lines_and_json
   for the drift warning, test_drift_fails_boot_only_under_fail_on_drift,
   test_a_running_gateway_warns_of_drift_and_strict_mode_and_its_doctor_reports_tampering);
   tests/unit/runtime/test_config_check.py::test_drift_is_a_warning_line_and_an_error_under_fail_on_drift.
10. `config check` exits 0 / 1 / 2: tests/integration/test_config_check_cli.py::test_config_check_exits_0_1_2_with_the_spec_lines_and_json;
    here::test_config_check_is_0_without_errors_2_only_for_warnings_under_fail_on_warnings (no finding,
    and errors beside warnings under `--fail-on-warnings` = 1).
11. Reload items (SIGHUP / POST /system/reload, a job running during reload): the reload part.
12. `config set --apply` edits the owning file, keeps comments, writes `.bak`, restores on failure,
    prints the re-lock hint; `--dry-run` writes nothing: tests/integration/test_config_edit_cli.py
    (test_set_apply_edits_the_owning_file_keeping_comments, test_set_that_does_not_validate_is_restored,
    test_set_dry_run_writes_nothing_and_modes_are_required), tests/unit/config/test_config_editing.py
    (mode kept), tests/unit/config/test_config_show_set.py; here::test_set_in_a_high_security_file_says_the_gateway_refuses_until_locked.
13. `config token create`: tests/integration/test_config_tokens.py (the vault issue).
14. `service.durability: normal` → `synchronous=NORMAL`, default FULL, other value an error:
    here::test_durability_sets_the_sqlite_synchronous_mode; the error in
    here::test_each_section_4_bad_value_has_its_exact_message.
15. `state.url`: a later issue.
16. A literal `token:` works with a migration warning; no error path prints a token value:
    here::test_a_literal_token_authenticates_warns_once_and_never_shows_its_value (one daemon),
    here::test_no_config_error_path_prints_a_literal_token_value;
    tests/unit/config/test_config_api.py::test_token_value_never_appears_in_a_type_error.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ductile.config import ConfigError, ConfigSource, load_config
from ductile.config.checksums import read_checksums
from ductile.events.log import EventLog
from ductile.events.sqlite_store import connect
from ductile.plugins.discovery import discover
from ductile.runtime.catalog import build_catalog
from ductile.vault.keys import generate_identity, write_key_file
from tests.integration.daemon import TEST_PLUGINS, Daemon, call

NOTHING_FOUND = "no config found (checked: $DUCTILE_CONFIG_DIR, ~/.config/ductile, /etc/ductile)"


def ductile(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("DUCTILE_CONFIG_DIR", "DUCTILE_AGE_KEY_FILE", "DUCTILE_VAULT_TOKEN")}
    environ.update({"HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=home, env=environ)


def config_dir(path: Path, root: str, **files: str) -> Path:
    """A config dir with the shellok test plugin under plugins/ and the given files."""
    shutil.copytree(TEST_PLUGINS / "shellok", path / "plugins" / "shellok")
    (path / "config.yaml").write_text(textwrap.dedent(root))
    for name, text in files.items():
        (path / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (path / name.replace("__", "/")).write_text(textwrap.dedent(text))
    return path


# --- 1. discovery ---------------------------------------------------------------------------------


def named(path: Path, name: str) -> Path:
    return config_dir(path, f"plugin_roots: [plugins]\nservice: {{name: {name}}}\n")


@pytest.mark.skipif(Path("/etc/ductile").exists(), reason="this machine has an /etc/ductile")
def test_discovery_order_and_its_errors_through_the_cli(tmp_path: Path, home: Path) -> None:
    nothing = ductile("config", "get", "service.name", home=home)
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (1, "", f"config error: {NOTHING_FOUND}\n")
    as_json = ductile("config", "get", "service.name", "--json", home=home)
    assert (as_json.returncode, json.loads(as_json.stdout)) == (1, {"error": NOTHING_FOUND})

    explicit, from_env = named(tmp_path / "explicit", "explicit"), named(tmp_path / "from-env", "from-env")
    named(home / ".config" / "ductile", "from-home")
    env = {"DUCTILE_CONFIG_DIR": str(from_env)}
    assert ductile("config", "get", "service.name", home=home, env=env).stdout == "from-env\n"
    assert ductile("config", "get", "service.name", "--config-dir", str(explicit), home=home,
                   env=env).stdout == "explicit\n"
    assert ductile("config", "get", "service.name", "--config", str(explicit / "config.yaml"), home=home,
                   env=env).stdout == "explicit\n"
    gone = {"DUCTILE_CONFIG_DIR": str(tmp_path / "gone")}  # used only if the path exists
    assert ductile("config", "get", "service.name", home=home, env=gone).stdout == "from-home\n"

    both = ductile("config", "get", "service.name", "--config", str(explicit), "--config-dir", str(explicit),
                   home=home)
    assert (both.returncode, both.stdout, both.stderr) == (
        1, "", "config error: use only one of --config or --config-dir\n")


# --- 6. every key of §4: defaults and bad values --------------------------------------------------

WORKERS = max(1, (os.cpu_count() or 1) - 1)

# §4.1-§4.3 default → what `config show --json` prints for it (durations in the short form).
SHOWN_DEFAULTS: list[tuple[str, Any]] = [
    ("state.path", "data/ductile.db"),
    ("plugins", {}),
    ("service.name", "ductile"),
    ("service.tick_interval", "1m"),
    ("service.log_level", "info"),
    ("service.log_format", "json"),
    ("service.durability", "full"),
    ("service.max_workers", WORKERS),
    ("service.shutdown_grace", "30s"),
    ("service.hook_max_depth", 4),
    ("service.dedupe_ttl", "24h"),
    ("service.job_queue_retention", "24h"),
    ("service.job_log_retention", "720h"),
    ("service.job_transitions_retention", "720h"),
    ("service.job_attempts_retention", "720h"),
    ("service.breaker_transitions_retention", "2160h"),
    ("service.allow_symlinks", False),
    ("service.plugin_env_passthrough", []),
    ("service.strict_mode", False),
    ("service.admission.verify_integrity_on_boot", False),
    ("service.admission.fail_on_drift", False),
    ("service.admission.validate_config_on_boot", False),
    ("api.enabled", False),
    ("api.listen", "127.0.0.1:8080"),
    ("api.max_concurrent_sync", 10),
    ("api.max_sync_timeout", "5m"),
    ("api.allowed_origins", []),
    ("api.auth.tokens", []),
]
# §4.4 → `config show --effective --json`: each field's value, all of source "default".
EFFECTIVE_DEFAULTS: dict[str, Any] = {
    "enabled": False, "retry.max_attempts": 4, "retry.backoff_base": "30s", "timeouts.poll": "1m",
    "timeouts.handle": "2m", "timeouts.health": "10s", "timeouts.init": "30s", "circuit_breaker.threshold": 3,
    "circuit_breaker.reset_after": "30m", "max_outstanding_polls": 1, "parallelism": WORKERS,
}


def dig(document: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        document = document[part]
    return document


def test_every_section_4_default_is_shown_by_config_show(tmp_path: Path, home: Path) -> None:
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\n")
    shown = ductile("config", "show", "--json", "--config-dir", str(conf), home=home)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert {key: dig(document, key) for key, _ in SHOWN_DEFAULTS} == dict(SHOWN_DEFAULTS)
    # Paths resolve against configDir (§3.3): the vault file and the management socket beside the state DB.
    assert document["secrets"]["vault_file"] == str(conf / "vault.age")
    assert document["api"]["management_socket"] == str(conf / "data" / "vault-admin.sock")
    assert document["plugin_roots"] == ["plugins"]

    (conf / "config.yaml").write_text("plugin_roots: [plugins]\nplugins: {shellok: }\n")  # enabled omitted
    effective = ductile("config", "show", "--effective", "--json", "--config-dir", str(conf), home=home)
    assert effective.returncode == 0, effective.stderr
    fields = json.loads(effective.stdout)["shellok"]
    assert {k: v["value"] for k, v in fields.items()} == EFFECTIVE_DEFAULTS
    assert {v["source"] for v in fields.values()} == {"default"}
    assert ductile("config", "get", "--effective", "shellok.timeouts.handle", "--config-dir", str(conf),
                   home=home).stdout == "2m (default)\n"


def test_effective_parallelism_of_a_concurrency_unsafe_plugin_is_1(tmp_path: Path, home: Path) -> None:
    """§4.4: the default is max_workers, or 1 if the manifest says ``concurrency_safe: false``
    (the dispatcher's rule); `config show --effective` and `config plugin show` print what runs."""
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\nservice: {max_workers: 3}\n"
                      "plugins: {serial: {enabled: true}, shellok: {enabled: true}}\n")
    shutil.copytree(TEST_PLUGINS / "serial", conf / "plugins" / "serial")
    shown = ductile("config", "show", "--effective", "--json", "--config-dir", str(conf), home=home)
    assert shown.returncode == 0, shown.stderr
    fields = json.loads(shown.stdout)
    assert (fields["serial"]["parallelism"], fields["shellok"]["parallelism"]) == (
        {"value": 1, "source": "default"}, {"value": 3, "source": "default"})
    detail = ductile("config", "plugin", "show", "serial", "--json", "--config-dir", str(conf), home=home)
    assert detail.returncode == 0, detail.stderr
    assert json.loads(detail.stdout)["config"]["parallelism"]["value"] == 1


# (config.yaml text after `plugin_roots: [plugins]`, the exact error). One row per message of §4.
BAD_VALUES: list[tuple[str, str]] = [
    ("service: {tick_interval: 50ms}", "config.yaml:2: service.tick_interval must be at least 100ms"),
    ("service: {tick_interval: 30}", 'config.yaml:2: service.tick_interval: invalid duration "30": missing unit'),
    ("service: {log_level: verbose}", "config.yaml:2: service.log_level must be one of debug, info, warn, error"),
    ("service: {durability: off}", 'config.yaml:2: service.durability must be "full" or "normal"'),
    ("service: {durability: normal-ish}", 'config.yaml:2: service.durability must be "full" or "normal"'),
    ("service: {max_workers: 0}", "config.yaml:2: service.max_workers must be > 0"),
    ("service: {hook_max_depth: -1}", "config.yaml:2: service.hook_max_depth must be >= 0"),
    ("service: {dedupe_ttl: 2d, job_queue_retention: 1d}",
     "config.yaml:2: service.job_queue_retention (24h) must be >= service.dedupe_ttl (48h)"),
    ("api: {management_socket: /tmp/" + "s" * 99 + "}",
     "config.yaml:2: api.management_socket path too long (max 103 bytes)"),
    ("api: {max_concurrent_sync: 0}", "config.yaml:2: api.max_concurrent_sync must be > 0"),
    ("api: {max_sync_timeout: 0s}", "config.yaml:2: api.max_sync_timeout must be > 0"),
    ("api:\n  auth:\n    tokens:\n      - {scopes: ['*']}",
     "config.yaml:5: api.auth.tokens[0]: set exactly one of secret_ref or token"),
    ("api:\n  auth:\n    tokens:\n      - {token: '${NOT_SET}', scopes: ['*']}",
     "config.yaml:5: api.auth.tokens[0]: environment variable ${NOT_SET} is not set"),
    ("plugins:\n  shellok: {enabled: true, schedule: {every: 5m}}",
     'config.yaml:3: plugin "shellok": schedule is no longer supported; use schedules[]'),
    ("plugins:\n  shellok: {enabled: true, retry: {max_attempts: -1}}",
     'config.yaml:3: plugin "shellok": retry.max_attempts must be >= 1'),
    ("plugins:\n  shellok: {enabled: true, parallelism: 9}",
     f'config.yaml:3: plugin "shellok": parallelism 9 must be between 1 and service.max_workers ({WORKERS})'),
    ("plugins:\n  shellok: {enabled: true, max_outstanding_polls: 0}",
     'config.yaml:3: plugin "shellok": max_outstanding_polls must be >= 1'),
    ("plugins:\n  shellok: {enabled: true, vault_principal: Shell_OK}",
     'config.yaml:3: plugin "shellok": vault_principal "Shell_OK" is not a valid principal name'),
    ("plugins:\n  shell_ok: {enabled: true, requires_vault: true}",
     'config.yaml:3: plugin "shell_ok": name is not a valid principal name; set plugins.shell_ok.vault_principal'),
    ("plugins:\n  shellok: {enabled: true, config: {url: '${NOT_SET}'}}",
     'config.yaml:3: plugin "shellok": environment variable ${NOT_SET} is not set'),
    ("plugins:\n  shellok: {enabled: true, run_as: nobody}",
     'config.yaml:3: plugin "shellok": run_as (privilege separation) is not supported; '
     "remove it to run the plugin as the gateway user"),
    ("plugins: {shellok: {enabled: true}}\nwebhooks:\n  endpoints:\n"
     "    - {path: /in, plugin: shellok, secret_ref: s, signature_header: X}",
     "config.yaml:3: webhooks.listen is required when webhook endpoints are configured"),
    ("webhooks:\n  listen: '127.0.0.1:9'\n  endpoints:\n    - {path: /in, plugin: ghost, secret_ref: s, "
     "signature_header: X}", 'config.yaml:5: webhook endpoint "/in": plugin "ghost" is not configured'),
    ("plugins: {shellok: {enabled: true}}\nwebhooks:\n  listen: '127.0.0.1:9'\n  endpoints:\n"
     "    - {path: /in, plugin: shellok, signature_header: X}",
     'config.yaml:6: webhook endpoint "/in": secret_ref is required'),
]


@pytest.fixture
def load_text(tmp_path: Path) -> Callable[[str], Any]:
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\n")

    def load(text: str) -> Any:
        (conf / "config.yaml").write_text("plugin_roots: [plugins]\n" + text + "\n")
        source = ConfigSource(root_file=conf / "config.yaml", config_dir=conf, source="explicit")
        return load_config(source, environ={"HOME": str(tmp_path / "home")})

    return load


@pytest.mark.parametrize(("text", "message"), BAD_VALUES, ids=[m.split(": ", 1)[-1][:60] for _, m in BAD_VALUES])
def test_each_section_4_bad_value_has_its_exact_message(load_text: Callable[[str], Any], text: str,
                                                        message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_text(text)
    assert message in str(error.value).splitlines(), str(error.value)


WARNINGS: list[tuple[str, str, str]] = [
    ("service: {name: My_Gateway}", "service.name", ""),
    ("api: {enabled: true, listen: '0.0.0.0:8080', auth: {tokens: [{secret_ref: t}]}}", "api.listen", ""),
    ("api: {auth: {tokens: [{token: abc, scopes: ['*']}]}}", "api.auth.tokens[0]",
     "api.auth.tokens[0]: literal token in config; move it into the vault with 'ductile config token create'"),
    ("tokens: []", "tokens",  # <path>: the file that has the key
     "tokens.yaml is no longer read for secrets; migrate with 'ductile vault import --tokens {conf}/config.yaml'"),
]


@pytest.mark.parametrize(("text", "field", "message"), WARNINGS, ids=[f for _, f, _ in WARNINGS])
def test_section_4_warnings_name_their_key(load_text: Callable[[str], Any], text: str, field: str,
                                           message: str) -> None:
    config = load_text(text)
    warnings = config.warnings
    assert field in [w.field for w in warnings], warnings
    if message:
        message = message.format(conf=config.source.config_dir)
        assert message in [w.message for w in warnings], warnings


def test_uses_of_an_undiscovered_plugin_is_refused(load_text: Callable[[str], Any]) -> None:
    config = load_text("plugins:\n  alias: {enabled: true, uses: ghost}")
    with pytest.raises(ConfigError) as error:
        build_catalog(config, discover(config.plugin_roots)[0])
    assert 'plugin "alias": uses "ghost" is not a discovered plugin' in str(error.value)


# --- 8. config lock -------------------------------------------------------------------------------


def test_config_lock_hashes_directory_includes_and_env_files_and_replaces_the_lock_atomically(
        tmp_path: Path, home: Path) -> None:
    conf = config_dir(tmp_path / "conf", """\
        plugin_roots: [plugins]
        include: [conf.d, more.yaml]
        environment_vars: {include: [app.env]}
        """, **{"conf.d__a.yaml": "service: {name: a}\n", "conf.d__b.yaml": "include: [../nested.yaml]\n",
                "conf.d__.hidden.yaml": "x: 1\n", "more.yaml": "environment_vars: {include: [more.env]}\n",
                "nested.yaml": "{}\n", "app.env": "A=1\n", "more.env": "B=2\n"})
    (conf / ".checksums").write_text("version: 2\nhashes: {}\n")
    os.link(conf / ".checksums", tmp_path / "old-lock")  # a write in place would show through this link
    done = ductile("config", "lock", "--config-dir", str(conf), home=home)
    assert done.returncode == 0, done.stderr
    lock = read_checksums(conf)
    assert lock is not None and set(lock.hashes) == {str(conf / n) for n in (
        "config.yaml", "conf.d/a.yaml", "conf.d/b.yaml", "nested.yaml", "more.yaml", "app.env", "more.env")}
    assert (tmp_path / "old-lock").read_text() == "version: 2\nhashes: {}\n"
    assert (conf / ".checksums").read_text().startswith("version: 2\n")
    assert (conf / ".checksums").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in conf.iterdir() if p.name.startswith(".checksums")) == [".checksums"]


# --- 9. a tampered high-security file fails every full load --------------------------------------


def test_a_tampered_webhooks_yaml_fails_every_full_load(tmp_path: Path, home: Path) -> None:
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\n",
                      **{"plugins.yaml": "plugins: {shellok: {enabled: true}}\n",
                         "webhooks.yaml": "webhooks: {endpoints: []}\n"})
    write_key_file(conf / "age.key", generate_identity(), "test")
    assert ductile("vault", "init", "--config-dir", str(conf), home=home).returncode == 0
    assert ductile("config", "lock", "--config-dir", str(conf), home=home).returncode == 0
    assert ductile("config", "get", "service.name", "--config-dir", str(conf), home=home).returncode == 0
    with (conf / "webhooks.yaml").open("a") as f:
        f.write("# edited\n")
    tampered = (f"tampering detected: {conf / 'webhooks.yaml'} does not match .checksums (high-security file); "
                f"if you made this change, run 'ductile config lock --config-dir {conf}'")
    before = {p: p.read_bytes() for p in conf.iterdir() if p.is_file()}

    for args in (("config", "show"), ("config", "show", "--effective"), ("config", "get", "service.name"),
                 ("plugin", "lock", "shellok"),
                 ("config", "token", "create", "--name", "ci", "--scopes", "jobs:ro")):
        done = ductile(*args, "--config-dir", str(conf), home=home)
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"config error: {tampered}\n"), args
    check = ductile("config", "check", "--config-dir", str(conf), home=home)
    assert check.returncode == 1 and f"  ERROR [integrity] .checksums: {tampered}" in check.stdout.splitlines()
    boot = ductile("system", "start", "--config-dir", str(conf), home=home)
    assert boot.returncode == 1 and tampered in boot.stderr
    # Nothing was written by the refused commands (no token entry, no fingerprint, no secret).
    assert {p: p.read_bytes() for p in conf.iterdir() if p.is_file() and p.name != "gateway.log"} == {
        p: b for p, b in before.items() if p.name != "gateway.log"}


# --- 10. config check exit codes -----------------------------------------------------------------


def test_config_check_is_0_without_errors_2_only_for_warnings_under_fail_on_warnings(tmp_path: Path,
                                                                                       home: Path) -> None:
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\nplugins: {shellok: {enabled: true}}\n")

    def check(*flags: str) -> tuple[int, str]:
        assert ductile("config", "lock", "--config-dir", str(conf), home=home).returncode == 0
        done = ductile("config", "check", "--config-dir", str(conf), *flags, home=home)
        return done.returncode, done.stdout.splitlines()[0]

    assert check() == check("--fail-on-warnings") == (0, "Validation: ✓ All checks passed")
    (conf / "config.yaml").write_text("plugin_roots: [plugins]\nplugins: {shellok: {enabled: true, colour: red}}\n")
    assert check() == (0, "Validation: passed with 1 warning(s)")
    assert check("--fail-on-warnings") == (2, "Validation: passed with 1 warning(s)")
    (conf / "config.yaml").write_text("plugin_roots: [plugins]\nplugins: {shellok: {enabled: true, colour: red}}\n"
                                      "pipelines: [{name: p, on: x, steps: [{uses: ghost}]}]\n")
    code, summary = check("--fail-on-warnings")
    assert code == 1 and summary.startswith("Validation: failed ("), summary  # errors win over warnings
    as_json = ductile("config", "check", "--json", "--fail-on-warnings", "--config-dir", str(conf), home=home)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["valid"] is False


# --- 12. config set in a high-security file -------------------------------------------------------


def test_set_in_a_high_security_file_says_the_gateway_refuses_until_locked(tmp_path: Path, home: Path) -> None:
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\ninclude: [webhooks.yaml]\n",
                      **{"webhooks.yaml": "# the hooks\nwebhooks:\n  listen: '127.0.0.1:9001'\n  endpoints: []\n"})
    assert ductile("config", "lock", "--config-dir", str(conf), home=home).returncode == 0
    done = ductile("config", "set", "webhooks.listen=127.0.0.1:9002", "--apply", "--config-dir", str(conf),
                   home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == 'Successfully set "webhooks.listen" to 127.0.0.1:9002 in webhooks.yaml'
    assert done.stdout.splitlines()[-1] == (
        "Run 'ductile config lock' to seal the change, then 'ductile system reload' to apply it; "
        "the gateway will refuse to load until you run 'ductile config lock'."), done.stdout
    assert (conf / "webhooks.yaml").read_text() == (
        "# the hooks\nwebhooks:\n  listen: '127.0.0.1:9002'\n  endpoints: []\n")


# --- 14. durability -------------------------------------------------------------------------------


@pytest.mark.parametrize(("snippet", "mode"), [("", 2), ("service: {durability: full}", 2),
                                               ("service: {durability: normal}", 1)])
def test_durability_sets_the_sqlite_synchronous_mode(load_text: Callable[[str], Any], snippet: str,
                                                     mode: int) -> None:
    """The state DB's connection as the gateway opens it (EventLog → connect): FULL = 2, NORMAL = 1."""
    config = load_text(snippet)
    log = EventLog(config.state_path, config.service.durability).open_sync()
    try:
        conn = connect(config.state_path, log.durability)
        try:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == mode
        finally:
            conn.close()
    finally:
        log.close()


# --- 16. literal tokens ---------------------------------------------------------------------------

# Fresh per run; the test ids name the cases, so every xdist worker collects the same ids.
CANARY = f"literal-{uuid.uuid4().hex}"


@pytest.mark.parametrize("text", [
    f"api:\n  auth:\n    tokens:\n      - {{token: {CANARY}, secret_ref: x, scopes: ['*']}}",
    f"api:\n  auth:\n    tokens:\n      - {{token: {CANARY}, scopes: ['*'], extra: [}}",
    f"api:\n  auth:\n    tokens:\n      - {{token: {CANARY}, scopes: '*'}}",
    f"api:\n  auth:\n    tokens: {CANARY}",
    f"api:\n  auth: {{tokens: [{{token: {CANARY}}}]}}\n  max_concurrent_sync: 0",
], ids=["token-and-secret_ref", "bad-yaml", "scopes-not-a-list", "tokens-not-a-list", "bad-sibling-key"])
def test_no_config_error_path_prints_a_literal_token_value(tmp_path: Path, home: Path, text: str) -> None:
    conf = config_dir(tmp_path / "conf", "plugin_roots: [plugins]\n" + text + "\n")
    for args in (("config", "check"), ("config", "check", "--json"), ("config", "show"),
                 ("config", "get", "api.auth.tokens[0].token"), ("system", "start")):
        done = ductile(*args, "--config-dir", str(conf), home=home)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert CANARY not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


def test_a_literal_token_authenticates_warns_once_and_never_shows_its_value(tmp_path: Path, home: Path) -> None:
    d = Daemon(tmp_path / "gw", plugins={}, tokens=[{"token": CANARY, "scopes": ["jobs:ro"]}])
    try:
        shown = ductile("config", "get", "api.auth.tokens[0].token", "--config-dir", str(d.root), home=home)
        assert (shown.returncode, shown.stdout) == (0, "[REDACTED]\n")
        d.start()
        assert call(d, "GET", "/jobs", token=CANARY).status_code == 200
        assert call(d, "GET", "/system/doctor", token=CANARY).status_code == 403  # exactly its scopes
        assert call(d, "GET", "/jobs", token=CANARY + "x").status_code == 401
        warned = [line for line in d.log_lines() if line.get("msg", "").startswith("api.auth.tokens[0]: literal")]
        assert [w["msg"] for w in warned] == [
            "api.auth.tokens[0]: literal token in config; move it into the vault with 'ductile config token create'"]
        assert CANARY not in d.log_text()
        events = sqlite3.connect(d.state_db)
        try:
            assert not [r for r in events.execute("SELECT data FROM events") if CANARY.encode() in bytes(r[0])]
        finally:
            events.close()
    finally:
        d.close()

