"""Each selfcheck check on a real state DB (operations.md §5): a tampered event row breaks the chain,
a stale terminal queue row fails freshness, a swapped vault.age fails the vault agreement, and a
held PID lock refuses the offline run with the spec's message."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ductile.app.vault import init_vault
from ductile.commands.vault import MISMATCH_REFUSAL, RegisterPrincipal
from ductile.config.model import ServiceConfig
from ductile.events.log import EventLog
from ductile.events.sqlite_store import connect
from ductile.events.types import JobStarted, JobSucceeded, job_stream
from ductile.projections.registry import default_runner
from ductile.system import selfcheck
from ductile.system.pidlock import PidLock, pid_path
from ductile.vault.keys import generate_identity, load_keyring, write_key_file
from ductile.vocabulary import PrincipalKind
from tests.unit.events.samples import NS, enqueued, job_id

HOUR = 3600 * NS


def _finish(log: EventLog, n: int, at: int) -> None:
    jid = job_id(n)
    log.append_sync(job_stream(jid), [enqueued(jid, at=at), JobStarted(job_id=jid, attempt=1, at=at + 1),
                                      JobSucceeded(job_id=jid, attempt=1, result="{}", at=at + 2)])


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state.db"
    log = EventLog(path, "normal", default_runner()).open_sync()
    try:
        # The log stamps recorded_at with the wall clock; the jobs' own times are near it.
        _finish(log, 1, time.time_ns() - 2 * HOUR)
        _finish(log, 2, time.time_ns() - HOUR)
    finally:
        log.close()
    yield path


def _config(tmp_path: Path, **secrets: Any) -> Any:
    """What the checks read of a Config: service retention, the vault file, the key, the config dir."""
    return SimpleNamespace(service=ServiceConfig(), source=SimpleNamespace(config_dir=tmp_path),
                           secrets=SimpleNamespace(vault_file=tmp_path / "vault.age", age_key_file=None, **secrets))


def _reader(path: Path) -> sqlite3.Connection:
    return connect(path, readonly=True)


def test_a_sound_log_passes_the_chain_check(state: Path) -> None:
    check = selfcheck.chain_check(_reader(state))
    assert (check.ok, check.status, check.detail) == (True, "ok", "6 events, head 6")


def test_a_tampered_event_row_fails_the_chain_naming_its_position(state: Path) -> None:
    conn = sqlite3.connect(state, isolation_level=None)
    conn.execute("UPDATE events SET recorded_at = recorded_at + 1 WHERE position = 4")
    conn.close()
    check = selfcheck.chain_check(_reader(state))
    assert not check.ok and check.status == "fail"
    assert check.detail == "chain broken at position 4 (first bad position 4)"


def test_a_terminal_row_older_than_retention_fails_freshness(tmp_path: Path, state: Path) -> None:
    # Jobs 1 and 2 finished 1-2 h before the newest event: fresh under 24 h retention.
    assert selfcheck.freshness_check(_reader(state), _config(tmp_path)).ok
    log = EventLog(state, "normal", default_runner()).open_sync()
    try:
        _finish(log, 3, time.time_ns() - 30 * HOUR)  # a row retention should have pruned
    finally:
        log.close()
    check = selfcheck.freshness_check(_reader(state), _config(tmp_path))
    assert not check.ok
    assert check.detail is not None and check.detail.startswith("1 stale terminal queue row(s), oldest ")


def test_the_online_run_passes_on_a_sound_db_and_has_no_path(tmp_path: Path, state: Path) -> None:
    checks = selfcheck.online_checks(lambda: _reader(state), state, _config(tmp_path), {}, tmp_path)
    assert [(c.name, c.status) for c in checks] == [(n, "ok") for n in selfcheck.ONLINE_CHECKS]
    assert checks[-1].detail == "no vault"


@pytest.fixture
def vault(tmp_path: Path, state: Path) -> Path:
    key = tmp_path / "age.key"
    write_key_file(key, generate_identity(), "test")
    log = EventLog(state, "normal", default_runner()).open_sync()
    try:
        keeper, _ = init_vault(tmp_path / "vault.age", load_keyring(key), log)
        keeper.apply(RegisterPrincipal(name="echo", kind=PrincipalKind.PLUGIN))
    finally:
        log.close()
    return key


def test_a_vault_that_agrees_with_the_log_passes(tmp_path: Path, state: Path, vault: Path) -> None:
    check = selfcheck.vault_check(_reader(state), _config(tmp_path), {"DUCTILE_AGE_KEY_FILE": str(vault)}, tmp_path)
    assert check.ok, check.detail
    assert check.path == str(tmp_path / "vault.age")


def test_a_swapped_vault_age_fails_the_agreement(tmp_path: Path, state: Path, vault: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    init_vault(other / "vault.age", load_keyring(vault), None)
    os.replace(other / "vault.age", tmp_path / "vault.age")
    check = selfcheck.vault_check(_reader(state), _config(tmp_path), {"DUCTILE_AGE_KEY_FILE": str(vault)}, tmp_path)
    assert (check.ok, check.status, check.detail) == (False, "fail", MISMATCH_REFUSAL)


def test_a_vault_without_its_key_fails_without_comparing(tmp_path: Path, state: Path, vault: Path) -> None:
    vault.unlink()
    check = selfcheck.vault_check(_reader(state), _config(tmp_path), {}, tmp_path / "home")
    assert (check.ok, check.detail) == (False, selfcheck.NO_KEY)


def test_a_held_pid_lock_refuses_the_offline_run(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "config.yaml").write_text("plugin_roots: [./plugins]\nstate:\n  path: ./data/ductile.db\n")
    with PidLock(pid_path(tmp_path / "data" / "ductile.db")):
        checks = selfcheck.offline_checks(None, str(tmp_path), {}, tmp_path)
    by_name = {c.name: c for c in checks}
    assert [c.name for c in checks] == list(selfcheck.OFFLINE_CHECKS)
    assert by_name["pid_lock"].detail == (
        f"gateway is running (pid {os.getpid()}); stop it first — selfcheck needs exclusive access to the state DB")
    assert all(c.status == "skipped" for c in checks[3:])


def test_an_offline_run_on_a_sound_db_passes_and_reports_progress_over_both_passes(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "config.yaml").write_text("plugin_roots: [./plugins]\nstate:\n  path: ./data/ductile.db\n")
    log = EventLog(tmp_path / "data" / "ductile.db", "full", default_runner()).open_sync()
    try:
        _finish(log, 1, time.time_ns() - HOUR)
    finally:
        log.close()
    seen: list[tuple[int, int]] = []
    checks = selfcheck.offline_checks(None, str(tmp_path), {}, tmp_path, lambda d, t: seen.append((d, t)))
    assert [(c.name, c.status) for c in checks] == [(n, "ok") for n in selfcheck.OFFLINE_CHECKS], checks
    assert seen[-1] == (6, 6)  # 3 events, chained then replayed
    assert not pid_path(tmp_path / "data" / "ductile.db").exists() or PidLock(
        pid_path(tmp_path / "data" / "ductile.db")).acquire().release() is None  # the lock was released


def test_a_caller_holding_the_lock_runs_every_check(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "config.yaml").write_text("plugin_roots: [./plugins]\nstate:\n  path: ./data/ductile.db\n")
    EventLog(tmp_path / "data" / "ductile.db", "full", default_runner()).open_sync().close()
    with PidLock(pid_path(tmp_path / "data" / "ductile.db")):
        checks = selfcheck.offline_checks(None, str(tmp_path), {}, tmp_path, lock_held=True)
    assert all(c.ok for c in checks), checks
    assert checks[2].detail == "held by this process for its run"
