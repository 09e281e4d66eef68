"""What boot would check (config.md §5, §6.3, §6.5, §7) on real config dirs: the collected load
errors, the report and its rendering, boot admission and reload_refusal."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from ductile.app.config_lock import plan_lock, write_lock
from ductile.cli.config_report import human_lines, render
from ductile.config import ConfigSource, load_config
from ductile.config.errors import ConfigError, ConfigErrors
from ductile.config.loader import collect_config
from ductile.plugins.discovery import discover
from ductile.runtime.catalog import build_catalog
from ductile.runtime.config_check import admit_boot, check_config, reload_refusal

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    (d / "plugins").mkdir(parents=True)
    shutil.copytree(PLUGINS / "shellok", d / "plugins" / "shellok")
    write(d, "config.yaml", """\
        plugin_roots: [plugins]
        include: [plugins.yaml]
        """)
    write(d, "plugins.yaml", "plugins:\n  shellok: {enabled: true}\n")
    return d


def write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(textwrap.dedent(text))


def source(d: Path) -> ConfigSource:
    return ConfigSource(root_file=d / "config.yaml", config_dir=d, source="explicit")


def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home")}


def lock(d: Path, tmp_path: Path) -> None:
    write_lock(plan_lock(source(d), env(tmp_path)))


def test_two_independent_load_errors_are_both_reported_with_file_and_line(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", """\
        plugin_roots: [plugins]
        include: [plugins.yaml, gone.yaml]
        service:
          tick_interval: 10ms
        pipelines: [{name: p, on: x, steps: [{uses: shellok}]}]
        """)
    write(conf, "plugins.yaml", "pipelines: [{name: p, on: y, steps: [{uses: shellok}]}]\n")
    errors = [str(e) for e in collect_config(source(conf), env(tmp_path)).errors]
    assert errors == [
        f"config.yaml:2: include[1] (config.yaml): file not found: {conf / 'gone.yaml'}",
        'plugins.yaml:1: pipeline "p" is defined twice (config.yaml, plugins.yaml)',
        "config.yaml:4: service.tick_interval must be at least 100ms",
    ]
    with pytest.raises(ConfigErrors) as raised:
        load_config(source(conf), env(tmp_path))
    assert str(raised.value) == "\n".join(errors)


def test_errors_in_two_plugin_entries_are_both_reported(conf: Path, tmp_path: Path) -> None:
    write(conf, "plugins.yaml", """\
        plugins:
          a: {enabled: true, retry: {max_attempts: -1}}
          b: {enabled: true, max_outstanding_polls: -2}
        """)
    errors = [str(e) for e in collect_config(source(conf), env(tmp_path)).errors]
    assert errors == ['plugins.yaml:2: plugin "a": retry.max_attempts must be >= 1',
                      'plugins.yaml:3: plugin "b": max_outstanding_polls must be >= 1']


def test_a_clean_locked_config_passes(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock(conf, tmp_path)
    report = check_config(source(conf), env(tmp_path))
    assert report.findings == []
    assert render(report, json=False, fail_on_warnings=True) == 0
    assert capsys.readouterr().out == "Validation: ✓ All checks passed\n"


def test_drift_is_a_warning_line_and_an_error_under_fail_on_drift(conf: Path, tmp_path: Path) -> None:
    lock(conf, tmp_path)
    write(conf, "plugins.yaml", "plugins:\n  shellok: {enabled: true, parallelism: 1}\n")
    report = check_config(source(conf), env(tmp_path))
    drift = (f"[integrity] .checksums: config drift: {conf / 'plugins.yaml'} changed since the last "
             "'ductile config lock' (operational file)")
    assert human_lines(report) == ["Validation: passed with 1 warning(s)", "  WARN  " + drift]
    assert render(report, json=False, fail_on_warnings=False) == 0
    assert render(report, json=True, fail_on_warnings=True) == 2
    write(conf, "config.yaml", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\n"
                               "service: {admission: {fail_on_drift: true}}\n")
    lines = human_lines(check_config(source(conf), env(tmp_path)))
    assert lines[0] == "Validation: failed (2 error(s), 0 warning(s))"
    assert "  ERROR " + drift + " (fatal: admission.fail_on_drift)" in lines


def test_doctor_findings_disabled_plugin_undeclared_schedule_command_and_fast_ticks(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\nservice: {tick_interval: 500ms}\n")
    write(conf, "plugins.yaml", """\
        plugins:
          shellok: {enabled: true, schedules: [{every: 5m, command: sync}]}
          missing: {enabled: true}
        """)
    lines = human_lines(check_config(source(conf), env(tmp_path)))
    assert '  ERROR [plugins] plugins.missing: plugin "missing": not discovered in plugin_roots' in lines
    assert any(line.startswith("  ERROR [schedules] plugins.shellok.schedules[0]: ") and "not declared" in line
               for line in lines), lines
    assert ("  WARN  [service] service.tick_interval: service.tick_interval is below 1s: every tick costs a "
            "scheduler pass") in lines


def test_a_literal_token_warning_names_its_field_once(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", """\
        plugin_roots: [plugins]
        include: [plugins.yaml]
        api:
          auth:
            tokens: [{token: s3cret, scopes: ['*']}]
        """)
    lock(conf, tmp_path)
    assert human_lines(check_config(source(conf), env(tmp_path))) == [
        "Validation: passed with 1 warning(s)",
        "  WARN  [api] api.auth.tokens[0]: literal token in config; move it into the vault with "
        "'ductile config token create'",
    ]
    # The boot log prints the message alone, so there it keeps its field (config.md §4.3).
    [warning] = load_config(source(conf), env(tmp_path)).warnings
    assert warning.message.startswith("api.auth.tokens[0]: literal token in config")


def test_a_load_failure_is_an_error_report(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", "plugin_roots: [plugins]\nservice: {log_level: loud}\n")
    lines = human_lines(check_config(source(conf), env(tmp_path)))
    assert lines == ["Validation: failed (1 error(s), 0 warning(s))",
                     "  ERROR [load] config.yaml:2: service.log_level must be one of debug, info, warn, error"]


def _boot(conf: Path, tmp_path: Path) -> list[str]:
    config = load_config(source(conf), env(tmp_path))
    catalog = build_catalog(config, discover(config.plugin_roots, False)[0])
    return admit_boot(config, catalog, None, None, len(config.api.tokens))


def test_boot_refuses_tampering_and_warns_on_drift(conf: Path, tmp_path: Path) -> None:
    write(conf, "webhooks.yaml", "webhooks: {endpoints: []}\n")
    lock(conf, tmp_path)
    assert _boot(conf, tmp_path) == []
    write(conf, "plugins.yaml", "plugins:\n  shellok: {enabled: false}\n")
    assert _boot(conf, tmp_path) == [
        f"config drift: {conf / 'plugins.yaml'} changed since the last 'ductile config lock' (operational file)"]
    write(conf, "webhooks.yaml", "webhooks: {endpoints: []}\n# edited\n")
    with pytest.raises(ConfigError, match=r"^tampering detected: "):
        _boot(conf, tmp_path)


def test_validate_config_on_boot_refuses_an_unknown_key(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\n"
                               "service: {admission: {validate_config_on_boot: true}, tick: 1}\n")
    lock(conf, tmp_path)
    with pytest.raises(ConfigError) as refused:
        _boot(conf, tmp_path)
    assert str(refused.value) == ("1 ignored config key(s): config.yaml:service.tick; fix or remove the keys, "
                                  "or disable service.admission.validate_config_on_boot")


def test_a_root_only_key_in_an_include_is_fatal_under_validate_config_on_boot(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\n"
                               "service: {admission: {validate_config_on_boot: true}}\n")
    write(conf, "plugins.yaml", "service: {durability: normal}\nplugins: {}\n")
    lock(conf, tmp_path)
    with pytest.raises(ConfigError, match=r"^1 ignored config key\(s\): plugins.yaml:service.durability; "):
        _boot(conf, tmp_path)


def test_reload_refusal_keeps_a_gate_the_running_config_had(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\n"
                               "service: {admission: {fail_on_drift: true}}\n")
    lock(conf, tmp_path)
    running = load_config(source(conf), env(tmp_path))
    assert reload_refusal(running, running) is None
    # The new config drops the gate and drifts: the running config's gate still holds.
    write(conf, "config.yaml", "plugin_roots: [plugins]\ninclude: [plugins.yaml]\n")
    new = load_config(source(conf), env(tmp_path))
    assert reload_refusal(running, new) == (
        f"config reload rejected (admission.fail_on_drift): operational drift: {conf / 'config.yaml'}")
    lock(conf, tmp_path)
    assert reload_refusal(running, load_config(source(conf), env(tmp_path))) is None


def test_reload_refusal_rejects_tampering_whatever_the_gates(conf: Path, tmp_path: Path) -> None:
    write(conf, "webhooks.yaml", "webhooks: {endpoints: []}\n")
    lock(conf, tmp_path)
    config = load_config(source(conf), env(tmp_path))
    write(conf, "webhooks.yaml", "webhooks: {endpoints: []}\n# x\n")
    assert (reload_refusal(config, config) or "").startswith(
        f"config reload rejected: tampering detected: {conf / 'webhooks.yaml'} does not match .checksums")


def _hooks(conf: Path) -> None:
    write(conf, "config.yaml", """\
        plugin_roots: [plugins]
        include: [plugins.yaml]
        webhooks:
          listen: 127.0.0.1:9
          endpoints:
            - {path: /h, plugin: shellok, secret_ref: hook-key, signature_header: X-Sig}
        """)


def test_a_webhook_secret_ref_missing_from_the_vault_is_an_error(conf: Path, tmp_path: Path) -> None:
    _hooks(conf)
    report = check_config(source(conf), env(tmp_path), tmp_path / "home")
    assert [f.message for f in report.errors] == ['webhook endpoint "/h": secret_ref "hook-key" not found in vault']


def test_a_webhook_secret_ref_is_only_a_warning_when_the_vault_has_no_key_here(conf: Path, tmp_path: Path) -> None:
    # webhooks.md §1: the vault exists but no age key is available, so nothing can be resolved.
    _hooks(conf)
    (conf / "vault.age").write_bytes(b"age-encryption.org/v1\n")
    report = check_config(source(conf), env(tmp_path), tmp_path / "home")
    assert report.valid, report.errors
    assert 'webhook endpoint "/h": secret_ref "hook-key" not found in vault' in [f.message for f in report.warnings]
