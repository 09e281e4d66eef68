"""``system doctor``'s findings beyond ``config check`` (operations.md §6), on real config dirs:
each is produced by the state it reports, and the info level never changes the exit code."""

from __future__ import annotations

import os
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest

from ductile.cli.config_report import document, exit_code, human_lines
from ductile.config import ConfigSource
from ductile.events.log import EventLog
from ductile.events.timefmt import parse_rfc3339
from ductile.projections.registry import default_runner
from ductile.runtime.config_check import Level, check_config
from ductile.runtime.doctor import DURABILITY_NORMAL, GATEWAY_NOT_RUNNING, GATEWAY_RUNNING, doctor_report
from ductile.system.pidlock import PidLock, pid_path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
NOW = parse_rfc3339("2026-11-27T10:00:00Z")


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    (d / "plugins").mkdir(parents=True)
    for name in ("shellok", "behave"):
        shutil.copytree(PLUGINS / name, d / "plugins" / name)
    write(d, "config.yaml", """\
        plugin_roots: [plugins]
        state: {path: data/ductile.db}
        plugins:
          shellok:
            enabled: true
            schedules: [{id: nightly, cron: "0 3 * * *", timezone: UTC}]
        """)
    return d


def write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(textwrap.dedent(text))


def source(d: Path) -> ConfigSource:
    return ConfigSource(root_file=d / "config.yaml", config_dir=d, source="explicit")


def run(d: Path, tmp_path: Path):  # -> Report
    return doctor_report(source(d), {"HOME": str(tmp_path / "home")}, tmp_path / "home", now=NOW)


def messages(report, level: Level | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.message for f in report.findings if level is None or f.level is level]


def test_doctor_reports_everything_config_check_reports_first(conf: Path, tmp_path: Path) -> None:
    checked = check_config(source(conf), {"HOME": str(tmp_path / "home")}, tmp_path / "home")
    report = run(conf, tmp_path)
    assert report.findings[: len(checked.findings)] == checked.findings


def test_loaded_and_unconfigured_plugins_schedules_vault_state_and_gateway_are_reported(conf: Path,
                                                                                      tmp_path: Path) -> None:
    info = messages(run(conf, tmp_path), Level.INFO)
    assert "1 plugin(s) loaded: shellok" in info
    assert 'plugin "behave" is discovered but not configured under plugins: it never runs' in info
    assert 'plugin "shellok": schedule "nightly" (poll): next fire 2026-11-28T03:00:00Z (at the next start)' in info
    assert "no age key found" in info
    assert f"no vault at {conf / 'vault.age'}" in info
    assert f"state database {conf / 'data' / 'ductile.db'} does not exist yet (created at the first start)" in info
    assert GATEWAY_NOT_RUNNING in info
    assert any(m.startswith(f"{conf / 'data' / 'vault-admin.sock'} (") for m in info)
    assert any(m.endswith(f"MiB free in {conf / 'data'}") for m in info)


def test_info_findings_never_fail_a_run_but_show_in_the_report(conf: Path, tmp_path: Path) -> None:
    from ductile.app.config_lock import plan_lock, write_lock

    write_lock(plan_lock(source(conf), {"HOME": str(tmp_path / "home")}))
    report = run(conf, tmp_path)
    assert report.errors == [] and report.warnings == [] and report.info
    assert exit_code(report, fail_on_warnings=True) == 0
    lines = human_lines(report)
    assert lines[0] == "Validation: ✓ All checks passed"
    assert "  INFO  [gateway] state.path: gateway not running" in lines
    doc = document(report)
    assert doc["valid"] is True and doc["errors"] == [] and doc["warnings"] == []
    assert {"category": "gateway", "field": "state.path", "message": GATEWAY_NOT_RUNNING} in doc["info"]  # type: ignore[operator]


def test_durability_normal_is_a_warning(conf: Path, tmp_path: Path) -> None:
    write(conf, "config.yaml", (conf / "config.yaml").read_text() + "service: {durability: normal}\n")
    assert DURABILITY_NORMAL in messages(run(conf, tmp_path), Level.WARNING)


def test_an_entrypoint_that_is_not_executable_is_reported_and_its_plugin_refused(conf: Path, tmp_path: Path) -> None:
    entry = conf / "plugins" / "shellok" / "run.sh"
    entry.chmod(0o644)
    report = run(conf, tmp_path)
    assert (f"failed to load plugin (path={entry.parent / 'manifest.yaml'}, error=entrypoint is not executable: "
            f"{entry})") in messages(report, Level.WARNING)
    assert 'plugin "shellok": not discovered in plugin_roots' in messages(report, Level.ERROR)
    assert "0 plugin(s) loaded" in messages(report, Level.INFO)


def test_a_leftover_staged_key_is_a_warning(conf: Path, tmp_path: Path) -> None:
    from ductile.vault.keys import generate_identity, write_key_file

    key = conf / "age.key"
    write_key_file(key, generate_identity(), "test")
    (conf / "age.key.rotate-new").write_text("AGE-SECRET-KEY-STAGED\n")
    report = run(conf, tmp_path)
    assert any(m.startswith(f"age key {key} (mode ") for m in messages(report, Level.INFO))
    assert (f"leftover {key}.rotate-new from an interrupted 'vault rotate-key': re-run it to finish, "
            "or remove the file") in messages(report, Level.WARNING)


def test_the_event_log_head_the_planned_fire_and_a_running_gateway_come_from_the_state_dir(
        conf: Path, tmp_path: Path) -> None:
    db = conf / "data" / "ductile.db"
    db.parent.mkdir()
    EventLog(db, "full", default_runner()).open_sync().close()
    lock = PidLock(pid_path(db)).acquire()
    try:
        info = messages(run(conf, tmp_path), Level.INFO)
    finally:
        lock.release()
    assert f"event log head 0 ({db})" in info
    assert GATEWAY_RUNNING.format(pid=os.getpid()) in info


def test_a_foreign_state_database_is_an_error(conf: Path, tmp_path: Path) -> None:
    db = conf / "data" / "ductile.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE notes(x)")
    errors = messages(run(conf, tmp_path), Level.ERROR)
    assert f"state database {db} has an unknown schema (no event log); refusing to modify it" in errors


def test_a_management_socket_path_too_long_for_sun_path_is_a_warning(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    (deep / "plugins").mkdir(parents=True)
    shutil.copytree(PLUGINS / "shellok", deep / "plugins" / "shellok")
    write(deep, "config.yaml", "plugin_roots: [plugins]\nplugins: {shellok: {enabled: true}}\n")
    warnings = messages(run(deep, tmp_path), Level.WARNING)
    assert any(m.startswith(f"management socket path {deep / 'data' / 'vault-admin.sock'} is ") and
               m.endswith("bytes (max 103): the socket cannot be created") for m in warnings), warnings
