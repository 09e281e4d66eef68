"""The config editing verbs through the real CLI (config.md §9, cli.md §2.3): show/get/set on a
config dir with includes and comments, schema and validate, plugin list/show, and a dir made by
`config init` that `system start` boots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.daemon import TEST_PLUGINS, TOKEN, Daemon, free_port, wait_until

ROOT = f"""\
# the root file: comments must survive an edit
service:
  name: demo   # shown in logs
plugin_roots: [{TEST_PLUGINS}]
include: [plugins.yaml]
"""
PLUGINS = """\
plugins:
  shellok:
    enabled: true
    # a little more patient than the default
    retry: {max_attempts: 5}
    config:
      api_key: do-not-print
      password_ref: db-pass
"""


def ductile(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    env.pop("DUCTILE_CONFIG_DIR", None)
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


@pytest.fixture
def conf(tmp_path: Path, home: Path) -> Path:
    directory = tmp_path / "conf"
    directory.mkdir()
    (directory / "config.yaml").write_text(ROOT)
    (directory / "plugins.yaml").write_text(PLUGINS)
    return directory


def config(conf: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ductile("config", *args, "--config-dir", str(conf), cwd=conf, home=home)


def test_show_redacts_and_get_reads_one_value_with_its_source(conf: Path, home: Path) -> None:
    shown = config(conf, home, "show", "plugin:shellok", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["config"] == {"api_key": "[REDACTED]", "password_ref": "db-pass"}
    assert "do-not-print" not in config(conf, home, "show").stdout
    assert config(conf, home, "get", "service.tick_interval").stdout == "1m\n"
    effective = config(conf, home, "get", "--effective", "shellok.retry.max_attempts", "--json")
    assert json.loads(effective.stdout) == {"value": 5, "source": "explicit"}
    assert config(conf, home, "get", "--effective", "shellok.retry.backoff_base").stdout == "30s (default)\n"
    table = config(conf, home, "show", "--effective", "shellok", "--json")
    assert json.loads(table.stdout)["shellok"]["retry.max_attempts"] == {
        "value": 5, "source": "explicit", "file": "plugins.yaml"}

    missing = config(conf, home, "get", "plugins.shellok.enabeld", "--json")
    message = 'config get: no such key "plugins.shellok.enabeld" (plugins.shellok has: config, enabled, retry)'
    assert (missing.returncode, missing.stderr) == (1, f"error: {message}\n")
    assert json.loads(missing.stdout) == {"error": message}


def test_set_apply_edits_the_owning_file_keeping_comments(conf: Path, home: Path) -> None:
    done = config(conf, home, "set", "plugin:shellok.retry.max_attempts=7", "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        'Successfully set "plugin:shellok.retry.max_attempts" to 7 in plugins.yaml',
        "Validation: ✓ All checks passed",
        "Run 'ductile config lock' to seal the change, then 'ductile system reload' to apply it.",
    ]
    assert (conf / "plugins.yaml").read_text() == PLUGINS.replace("max_attempts: 5", "max_attempts: 7")
    assert (conf / "plugins.yaml.bak").read_text() == PLUGINS
    assert (conf / "config.yaml").read_text() == ROOT


def test_set_that_does_not_validate_is_restored(conf: Path, home: Path) -> None:
    failed = config(conf, home, "set", "service.tick_interval=soon", "--apply")
    assert failed.returncode == 1
    assert failed.stderr == ('error: validation failed: config.yaml:4: service.tick_interval: invalid duration '
                             '"soon" (restored config.yaml)\n')
    assert (conf / "config.yaml").read_text() == ROOT


def test_set_with_a_doctor_error_is_restored_and_never_claims_success(conf: Path, home: Path) -> None:
    failed = config(conf, home, "set", "plugins.ghost.enabled=true", "--apply")
    assert failed.returncode == 1
    assert "Successfully set" not in failed.stdout
    assert failed.stdout.splitlines()[0].startswith("Validation: failed (1 error(s)")
    assert failed.stderr == ('error: validation failed: plugins.ghost: plugin "ghost": not discovered in '
                             'plugin_roots (restored plugins.yaml)\n')
    assert (conf / "plugins.yaml").read_text() == PLUGINS


def test_set_a_per_file_key_checks_the_file_it_wrote(conf: Path, home: Path) -> None:
    # environment_vars.include is read per file, never merged (config.md §3.2): the edited file is
    # where its value takes effect.
    (conf / ".env").write_text("GREETING=hi\n")
    dry = config(conf, home, "set", "environment_vars.include=[.env]", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (conf / "config.yaml").read_text() == ROOT
    done = config(conf, home, "set", "environment_vars.include=[.env]", "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == 'Successfully set "environment_vars.include" to [.env] in config.yaml'
    written = (conf / "config.yaml").read_text()
    assert written.startswith(ROOT) and yaml.safe_load(written)["environment_vars"] == {"include": [".env"]}
    missing = config(conf, home, "set", "environment_vars.include=[gone.env]", "--dry-run")
    assert missing.returncode == 1 and "environment_vars.include[0]: file not found" in missing.stdout


def test_set_dry_run_writes_nothing_and_modes_are_required(conf: Path, home: Path) -> None:
    dry = config(conf, home, "set", "service.name=other", "--dry-run")
    assert (dry.returncode, dry.stdout.splitlines()[0]) == (0, 'Dry-run: would set "service.name" to other in config.yaml')
    assert (conf / "config.yaml").read_text() == ROOT and not (conf / "config.yaml.bak").exists()
    neither = config(conf, home, "set", "service.name=x")
    assert (neither.returncode, neither.stderr) == (1, "error: config set: one of --dry-run or --apply is required\n")
    bad = config(conf, home, "set", "service.name", "--apply")
    assert (bad.returncode, bad.stderr) == (1, "error: config set: expected <path>=<value>\n")


def test_schema_lists_names_and_validate_points_at_the_error(conf: Path, home: Path, tmp_path: Path) -> None:
    names = ductile("config", "schema", "--json", cwd=tmp_path, home=home)
    assert json.loads(names.stdout)["schemas"][:3] == ["config", "api", "plugins"]
    document = json.loads(ductile("config", "schema", "--name", "config", cwd=tmp_path, home=home).stdout)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    unknown = ductile("config", "schema", "--name", "x", cwd=tmp_path, home=home)
    assert unknown.returncode == 1 and unknown.stderr.startswith('error: unknown schema "x" (known: config, api,')

    ok = ductile("config", "validate", "--file", "plugins.yaml", "--name", "plugins", cwd=conf, home=home)
    assert (ok.returncode, ok.stdout) == (0, "OK: plugins.yaml is a valid plugins document\n")
    (conf / "bad.yaml").write_text("service:\n  max_workers: many\n")
    bad = ductile("config", "validate", "--file", "bad.yaml", cwd=conf, home=home)
    assert (bad.returncode, bad.stdout) == (
        1, "INVALID — bad.yaml: /service/max_workers: Expected `int | null`, got `str`\n")
    (conf / "plugins.yaml").write_text(PLUGINS.replace("enabled: true", "enabled: maybe"))
    whole = ductile("config", "validate", "--file", "config.yaml", "--whole", "--json", cwd=conf, home=home)
    assert json.loads(whole.stdout)["errors"] == [
        {"pointer": "/plugins/*/enabled", "message": "Expected `bool | null`, got `str`"}]


def test_plugin_list_and_show_set_discovered_against_configured(conf: Path, home: Path) -> None:
    listed = json.loads(config(conf, home, "plugin", "list", "--json").stdout)["plugins"]
    shellok = next(p for p in listed if p["name"] == "shellok")
    assert (shellok["discovered"], shellok["configured"], shellok["enabled"]) == (True, True, True)
    assert shellok["commands"] == [{"name": "poll", "type": "read"}]
    behave = next(p for p in listed if p["name"] == "behave")
    assert (behave["discovered"], behave["configured"]) == (True, False)

    shown = json.loads(config(conf, home, "plugin", "show", "shellok", "--json").stdout)
    assert shown["config"]["retry.max_attempts"]["source"] == "explicit"
    assert shown["config"]["config"]["api_key"] == "[REDACTED]"
    assert shown["fingerprint"] == {"recorded": False}
    missing = config(conf, home, "plugin", "show", "nope")
    assert (missing.returncode, missing.stderr) == (1, 'error: plugin "nope" is neither configured nor discovered\n')


def test_init_scaffolds_a_locked_dir_that_boots(tmp_path: Path, home: Path) -> None:
    target = tmp_path / "fresh"
    made = ductile("config", "init", "--config-dir", str(target), cwd=tmp_path, home=home)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [f"Initialised {target}:", f"  wrote {target}/config.yaml",
                                        f"  wrote {target}/plugins/", f"  wrote {target}/webhooks.yaml",
                                        f"  wrote {target}/.checksums"]
    assert target.stat().st_mode & 0o777 == 0o700
    root = yaml.safe_load((target / "config.yaml").read_text())
    assert (root["api"]["enabled"], root["state"], root["plugin_roots"], root["plugins"]) == (
        False, {"path": "data/ductile.db"}, [f"{target}/plugins"], {})
    assert yaml.safe_load((target / "webhooks.yaml").read_text()) == {"webhooks": {"endpoints": []}}
    checked = ductile("config", "check", "--config-dir", str(target), cwd=tmp_path, home=home)
    assert (checked.returncode, checked.stdout) == (0, "Validation: ✓ All checks passed\n")
    again = ductile("config", "init", "--config-dir", str(target), cwd=tmp_path, home=home)
    assert (again.returncode, again.stderr) == (
        1, f"error: config init: {target}/config.yaml already exists (use --force to overwrite)\n")

    (target / "webhooks.yaml").write_text("# mine\nwebhooks: {endpoints: []}\n")
    forced = ductile("config", "init", "--config-dir", str(target), "--force", cwd=tmp_path, home=home)
    assert forced.returncode == 0, forced.stderr
    assert (target / "webhooks.yaml.bak").read_text() == "# mine\nwebhooks: {endpoints: []}\n"
    assert (target / "config.yaml.bak").read_text() == (target / "config.yaml").read_text()
    assert (target / ".checksums.bak").exists()

    api_off = Daemon.for_config_dir(target, free_port(), TOKEN)
    try:  # the API is off, a valid posture: the gateway starts without a listener, and stops cleanly
        api_off.start(wait=False)
        wait_until(lambda: "gateway started" in api_off.log_text(), 30, what="gateway started")
        started = next(line for line in api_off.log_lines() if line["msg"] == "gateway started")
        assert started["posture"] == "closed"
        assert api_off.stop() == 0
    finally:
        api_off.close()

    assert ductile("config", "set", "api.enabled=true", "--apply", "--config-dir", str(target),
                   cwd=tmp_path, home=home).returncode == 0
    port = free_port()
    moved = ductile("config", "set", f"api.listen=127.0.0.1:{port}", "--apply", "--config-dir", str(target),
                    cwd=tmp_path, home=home)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "# Directories searched for plugins" in (target / "config.yaml").read_text()
    # /healthz shows the config path only to a caller with a token: a literal one warns (exit 2)
    tokened = ductile("config", "set", f'api.auth.tokens=[{{token: {TOKEN}, scopes: ["*"]}}]', "--apply",
                      "--config-dir", str(target), cwd=tmp_path, home=home)
    assert tokened.returncode == 2, tokened.stdout + tokened.stderr
    assert tokened.stdout.splitlines()[1] == "Validation: passed with 1 warning(s)"
    assert ductile("config", "lock", "--config-dir", str(target), cwd=tmp_path, home=home).returncode == 0
    gateway = Daemon.for_config_dir(target, port, TOKEN)
    try:
        gateway.start()
        assert gateway.client.get("/healthz").status_code == 200
    finally:
        gateway.close()
