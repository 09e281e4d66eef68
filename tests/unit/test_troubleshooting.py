"""operations.md §10: each troubleshooting message is produced verbatim by its trigger, one test
per row (an operator greps the logs for these texts, so a reworded message breaks their runbooks).

Rows pinned elsewhere, by the same trigger:
- ``fingerprint_mismatch`` / job failed closed: tests/unit/runtime/test_dispatcher_secrets.py
  (``fingerprint_mismatch: <detail>``, the job failed, the audit alert) and, end to end,
  tests/integration/test_vault_checklist.py.
- ``vault.age does not match the event log …``: tests/unit/test_app_vault.py
  (``test_boot_check_refuses_a_foreign_blob_and_adopt_accepts_it``) and, at boot,
  tests/integration/test_vault_boot.py.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ductile.app.config_lock import plan_lock, write_lock
from ductile.app.reload import refusal, rejected
from ductile.config import ConfigSource, load_config
from ductile.config.errors import ConfigError
from ductile.config.integrity import verify
from ductile.events.log import EventLog
from ductile.events.schema import UnknownSchema
from ductile.plugins.discovery import discover
from ductile.projections.registry import default_runner
from ductile.runtime.config_check import check_config
from ductile.system.pidlock import PidLock, PidLockHeld, pid_path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    (d / "plugins").mkdir(parents=True)
    shutil.copytree(PLUGINS / "shellok", d / "plugins" / "shellok")
    write(d, "config.yaml", """\
        plugin_roots: [plugins]
        state: {path: data/ductile.db}
        include: [plugins.yaml, webhooks.yaml]
        """)
    write(d, "plugins.yaml", "plugins:\n  shellok: {enabled: true}\n")
    write(d, "webhooks.yaml", "webhooks: {endpoints: []}\n")
    return d


def write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(textwrap.dedent(text))


def source(d: Path) -> ConfigSource:
    return ConfigSource(root_file=d / "config.yaml", config_dir=d, source="explicit")


def lock(d: Path, tmp_path: Path) -> None:
    write_lock(plan_lock(source(d), {"HOME": str(tmp_path / "home")}))


def test_a_second_holder_of_the_pid_lock_is_told_the_path_and_the_pid(tmp_path: Path) -> None:
    path = pid_path(tmp_path / "data" / "ductile.db")
    path.parent.mkdir()
    held = PidLock(path).acquire()
    try:
        with pytest.raises(PidLockHeld) as refused:
            PidLock(path).acquire()
    finally:
        held.release()
    assert str(refused.value) == f"failed to acquire PID lock {path}: another instance is running (pid {os.getpid()})"


def test_a_plugin_with_the_old_schedule_key_is_told_to_use_schedules(conf: Path) -> None:
    write(conf, "plugins.yaml", "plugins:\n  shellok: {enabled: true, schedule: {every: 5m}}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(source(conf))
    assert refused.value.message.endswith("schedule is no longer supported; use schedules[]")


def test_a_write_blocked_past_the_busy_timeout_by_another_process_is_database_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "ductile.db"
    (tmp_path / "config.yaml").write_text(f"plugin_roots: [{PLUGINS}]\nstate: {{path: ductile.db}}\n")
    EventLog(db, "full", default_runner()).open_sync().close()
    holder = textwrap.dedent(f"""\
        import sqlite3, time
        c = sqlite3.connect({str(db)!r}, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")  # a sqlite3 shell's open write transaction
        print("holding", flush=True)
        time.sleep(30)
        """)
    shell = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout is not None and shell.stdout.readline() == "holding\n"
        done = subprocess.run(  # an offline write: rebuild drops and refills the projections
            [sys.executable, "-m", "ductile.cli.main", "system", "rebuild", "--config", str(tmp_path)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)},
        )
    finally:
        shell.kill()
        shell.wait()
    assert done.returncode == 1
    assert "database is locked" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_high_security_file_changed_after_the_lock_is_tampering_detected(conf: Path, tmp_path: Path) -> None:
    lock(conf, tmp_path)
    write(conf, "webhooks.yaml", "webhooks: {endpoints: []}\n# edited\n")
    config = load_config(source(conf))
    messages = [f.message for f in verify(config.files, conf).findings]
    assert any(m.startswith(f"tampering detected: {conf / 'webhooks.yaml'} ") for m in messages), messages


def test_an_operational_file_changed_after_the_lock_is_config_drift(conf: Path, tmp_path: Path) -> None:
    lock(conf, tmp_path)
    write(conf, "plugins.yaml", "plugins:\n  shellok: {enabled: true, parallelism: 1}\n")
    config = load_config(source(conf))
    messages = [f.message for f in verify(config.files, conf).findings]
    assert f"config drift: {conf / 'plugins.yaml'} changed since the last 'ductile config lock' (operational file)" \
        in messages, messages


def test_a_plugin_directory_with_an_entrypoint_but_no_manifest_is_ignored_with_a_warning(tmp_path: Path) -> None:
    stray = tmp_path / "root" / "half-done"
    stray.mkdir(parents=True)
    (stray / "run.py").write_text("print('hi')\n")
    plugins, logs = discover([tmp_path / "root"])
    assert plugins == {}
    [note] = logs
    assert (note.level, note.msg) == ("WARN", "plugin directory missing manifest.yaml — directory will be ignored")
    assert note.fields["path"] == str(stray)
    # and `system doctor` / `config check` show it
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(f"plugin_roots: [{tmp_path / 'root'}]\n")
    report = check_config(source(conf), {"HOME": str(tmp_path)}, tmp_path)
    assert any(f.message.startswith("plugin directory missing manifest.yaml — directory will be ignored (path=")
               for f in report.warnings)


def test_a_reload_that_changes_a_restart_only_key_is_config_reload_rejected(conf: Path) -> None:
    running = load_config(source(conf))
    write(conf, "config.yaml", (conf / "config.yaml").read_text().replace("data/ductile.db", "elsewhere/ductile.db"))
    new = load_config(source(conf))
    reason = refusal(running, new)
    assert reason is not None
    assert rejected(reason) == "config reload rejected: changes to state.path require a full restart"


def test_a_state_database_ductile_did_not_create_has_an_unknown_schema(tmp_path: Path) -> None:
    db = tmp_path / "someone-elses.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE notes(x)")
    with pytest.raises(UnknownSchema) as refused:
        EventLog(db, "full", default_runner()).open_sync()
    assert str(refused.value) == f"state database {db} has an unknown schema (no event log); refusing to modify it"
