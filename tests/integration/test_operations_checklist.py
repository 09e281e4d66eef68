"""operations.md's acceptance checklist, item by item: the test(s) that prove each one.

Tests named ``here::`` live in this file; they cover what no other test proved (or proved only in
part). One gateway, booted twice (a ``kill -9`` between the boots), then a start refused by a
newer release's database (it stops at step 5, before anything serves).

1. `system start` boots in the order of §1; a second instance exits 1 with the PID-lock message
   naming the path and pid: tests/integration/test_daemon_lifecycle.py
   (test_a_second_instance_on_the_same_config_refuses_with_the_pid_lock_message — exact stderr,
   exit 1, the first gateway untouched; test_a_leftover_pid_file_whose_lock_is_free_never_blocks_a_start;
   test_a_config_error_exits_1_with_the_message_on_stderr_and_no_traceback — one ERROR line, the
   same text on stderr); here::test_boot_logs_the_config_source_recovers_orphans_before_any_dispatch_then_starts
   (step 1's `config_source`, step 7's startup snapshot, step 8's one WARN per orphan and its
   JobRecovered before any JobStarted, step 10's `gateway started` fields and GatewayStarted);
   tests/unit/events/test_event_log_integrity.py (step 5's unknown-schema refusal).
2. Log lines are JSON with `time`, `level`, `msg`, `component`; job lines carry `job_id`, `plugin`,
   `command`: here::test_every_log_line_is_json_with_the_spec_fields_and_job_lines_name_their_job
   (every line of both boots: RFC3339 UTC with milliseconds, the four levels, the spec's
   components — the event log's lines said `events` before; job lines with `attempt`, completions
   with `status` and `duration_ms`, `http request` lines with their fields and no query string,
   plugin stderr at WARN for a failed attempt and DEBUG otherwise);
   tests/unit/system/test_log_errors.py (an exception's `stack` on its one line).
3. SIGHUP reloads; SIGTERM with a job running lets it finish within `shutdown_grace`, exits 0; a
   job outlasting the grace is killed, stays `running`, and is recovered and completed after
   restart: tests/integration/test_reload.py (SIGHUP, `config reloaded successfully` / `config
   reload failed: …`), tests/integration/test_daemon_lifecycle.py
   (test_a_stop_signal_lets_a_running_job_finish_then_appends_gateway_stopped for SIGTERM and
   SIGINT, test_a_job_outliving_shutdown_grace_stays_running_and_completes_after_restart,
   test_a_second_sigterm_skips_the_remaining_grace).
4. `kill -9` during load: no acknowledged job lost, selfcheck passes:
   tests/integration/test_selfcheck.py::test_a_kill_9_under_load_then_a_restart_and_stop_leaves_selfcheck_green,
   tests/integration/test_log_crash.py::test_acknowledged_appends_survive_sigkill,
   tests/integration/test_scheduler.py::test_killing_the_gateway_after_a_scheduled_enqueue_never_fires_an_occurrence_twice;
   here::test_boot_logs_… (the job running at the kill is recovered and succeeds).
5. After a graceful stop, a copy of the database file alone (without `-wal`/`-shm`) holds every
   event (the stop checkpoints the WAL with TRUNCATE after closing the read pool and followers:
   ``ductile/events/log.py`` ``checkpoint_into_file``):
   tests/integration/test_selfcheck.py::test_after_a_graceful_stop_the_db_file_alone_holds_every_event
   (a gateway that ran jobs, a pipeline, a schedule and a vault) and the same check after
   kill -9 + restart + graceful stop in test_a_kill_9_under_load_then_a_restart_and_stop_leaves_selfcheck_green;
   here::test_after_kill_9_restart_and_graceful_stop_the_db_file_alone_holds_every_event;
   tests/unit/events/test_event_log_files.py::test_closing_checkpoints_the_wal_into_the_file_even_with_a_reader_still_open
   (fails without the explicit checkpoint: SQLite checkpoints only when the last connection closes).
6. A database from an earlier release opens (old jobs, plugin state and schedules read back,
   selfcheck replays the whole log, new work runs): tests/integration/test_release_upgrade.py
   (test_selfcheck_gates_the_upgrade_before_the_first_start_naming_what_the_start_rebuilds — it
   failed before: projections this release added (vault, audit, webhooks) were "missing";
   test_schedules_read_back_then_after_a_stop_selfcheck_replays_the_whole_log_identically; and the
   jobs, attempts, plugin state and new-work tests there);
   a newer one is refused with §1's message: here::test_a_database_from_a_newer_release_is_refused_with_the_exact_message
   (the real `system start`: exit 1, the exact text on stderr and as the one ERROR line);
   tests/unit/events/test_event_log_integrity.py::test_a_log_written_by_a_newer_ductile_is_refused.
7. `/healthz` shows `scheduler.last_tick_at`; a stalled scheduler turns it `degraded` with
   `late: true`: tests/integration/test_watch.py::test_healthz_carries_the_scheduler_heartbeat
   (real gateway), tests/unit/api/test_healthz_heartbeat.py (the real route: a stalled scheduler
   → `degraded`, `late: true`, `scheduler is late (last tick 45s ago)`, back to `ok`; `null` with
   no schedule — the key was left out before), tests/unit/runtime/test_scheduler_heartbeat.py
   (`max(3 × tick_interval, 30s)`).
8. `system stop` stops a running gateway, exit 0; on a stopped one `gateway is not running`, exit 0:
   tests/integration/test_ops_cli.py (test_stop_stops_the_gateway_then_reports_it_is_not_running,
   test_stop_gives_up_after_the_timeout_when_the_holder_ignores_sigterm).
9. `system status` exits 0 up (posture in `health`), 1 down, `--json` shape of §4:
   tests/integration/test_ops_cli.py (test_status_is_healthy_with_the_posture_in_health,
   test_status_of_a_stopped_gateway_exits_1_with_the_lock_check_failing),
   tests/integration/test_cli_api.py::test_status_is_healthy_while_running_and_degraded_after_stop.
10. `system selfcheck` refuses while running (exit 1), passes on a healthy stopped DB, fails a
    tampered event row (`event_log_chain`), a hand-edited projection row (`projection_replay`), a
    stale terminal queue row (freshness), a swapped `vault.age` (`vault_agreement`):
    tests/integration/test_selfcheck.py (test_while_the_gateway_runs_selfcheck_refuses_and_the_online_subset_passes,
    test_after_a_graceful_stop_every_check_passes, test_a_tampered_event_row_fails_the_chain,
    test_a_hand_edited_projection_row_fails_the_replay_naming_it, test_a_swapped_vault_age_fails_the_vault_agreement);
    freshness: tests/unit/system/test_selfcheck.py::test_a_terminal_row_older_than_retention_fails_freshness
    (a real gateway cannot hold a stale row without waiting out the retention).
11. `system backup` works while the gateway runs; each scope holds exactly its ladder; `vault.age`
    from scope `config`; the age key never: tests/integration/test_backup_restore.py::test_each_scope_taken_while_running_holds_exactly_its_ladder,
    tests/unit/test_backup.py (test_each_scope_adds_exactly_its_rung_and_never_the_key_sidecars_or_nested_dirs,
    test_env_files_are_the_ones_the_loader_read_whatever_their_name,
    test_a_config_that_parses_but_does_not_validate_still_backs_up_with_its_problems_as_warnings,
    test_a_config_that_does_not_parse_is_refused_by_the_backup,
    test_a_vault_outside_the_config_dir_is_archived_and_restored_to_its_path).
12. The manifest carries every field of §7 incl. the key pairing note and per-file sha256;
    `tar -xzOf … BACKUP_MANIFEST.txt` works: tests/integration/test_backup_restore.py::test_the_manifest_reads_without_extracting_and_pairs_the_key,
    tests/unit/test_backup.py::test_the_plan_records_the_ladder_and_the_literal_token_warning.
13. An existing destination is refused with the exact message and left untouched; a failed backup
    leaves no file at `--to`: tests/integration/test_backup_restore.py::test_human_output_blocks_and_an_existing_destination_left_untouched,
    tests/unit/test_backup.py (test_an_existing_destination_is_refused_and_left_untouched,
    test_a_failed_backup_leaves_nothing_at_the_destination).
14. `system restore` refuses a tampered archive before writing anything, refuses to overwrite
    without `--force`, and a restored directory + the custodied key passes selfcheck and starts:
    tests/integration/test_backup_restore.py (test_a_tampered_archive_is_refused_with_nothing_written,
    test_restore_after_a_wipe_with_the_custodied_key_brings_everything_back),
    tests/unit/test_backup.py (test_restore_refuses_a_bad_member_before_writing,
    test_restore_refuses_an_archive_without_a_manifest, test_restore_refuses_while_the_gateway_holds_the_lock).
15. `/healthz`, `/metrics`, SSE and `system watch` show the fields of §9:
    tests/integration/test_api_trigger.py::test_healthz_reports_the_documented_keys (now with
    `scheduler`), tests/integration/test_watch.py,
    tests/unit/api/test_metrics_exposition.py, tests/integration/test_sse.py,
    tests/unit/api/test_api_errors_logged.py (`failed to compute queue depth`),
    tests/integration/test_completion_faults.py (`event log not writable: …` degraded and back),
    tests/unit/tui/ (the dashboard).
16. Each troubleshooting message of §10 is produced verbatim by its trigger (one test per row):
    tests/unit/test_troubleshooting.py.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, db_file_alone_events, wait_until

COMPONENTS = {"main", "config", "eventlog", "dispatch", "scheduler", "router", "api", "webhook", "vault"}
LEVELS = {"DEBUG", "INFO", "WARN", "ERROR"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Run:
    """The one gateway of this module and what the tests look at."""

    def __init__(self, gw: Daemon, orphan: str, jobs: list[str], boot2_offset: int) -> None:
        self.gw = gw
        self.orphan = orphan  # running at the kill -9, recovered by the second boot
        self.jobs = jobs
        self.boot2_offset = boot2_offset  # where the second boot's lines start in the log


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("opscheck") / "gw"
    gw = Daemon(root, {"behave": {"enabled": True, "retry": {"max_attempts": 3}}},
                service={"shutdown_grace": "5s"})
    try:
        gw.start()
        jobs = [gw.trigger("behave", payload={"mode": "ok"}) for _ in range(4)]
        jobs.append(gw.trigger("behave", payload={"mode": "ok", "stderr": "note from a job that succeeded"}))
        jobs.append(gw.trigger("behave", payload={"mode": "error_noretry", "stderr": "note from a job that failed"}))
        orphan = gw.trigger("behave", payload={"mode": "sleep", "seconds": 2})
        gw.wait_job(orphan, {"running"})
        for job in jobs:
            gw.wait_job(job)
        # A job's "job completed" line is written just after its commit: a kill -9 in between
        # loses the line (the job stays done), so the kill waits for every line.
        wait_until(lambda: gw.log_text().count('"msg":"job completed"') >= len(jobs), 20, what="the jobs' lines")
        gw.kill9()
        offset = len(gw.log_text())
        gw.start()
        gw.wait_job(orphan)
        for job in jobs:
            gw.wait_job(job)
        assert gw.client.get("/healthz?token=never-logged").status_code == 200
        assert gw.stop() == 0
        yield Run(gw, orphan, jobs, offset)
    finally:
        gw.close()


def _boot2_lines(run: Run) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in run.gw.log_text()[run.boot2_offset:].splitlines() if line.strip()]


def test_boot_logs_the_config_source_recovers_orphans_before_any_dispatch_then_starts(run: Run) -> None:
    lines = _boot2_lines(run)
    msgs = [line["msg"] for line in lines]
    loaded = lines[msgs.index("configuration loaded")]
    assert loaded["config_source"] and loaded["component"] == "main"
    recovered = [line for line in lines if line["msg"] == "orphaned job recovered"]
    assert all(line["level"] == "WARN" for line in recovered)
    assert [line["job_id"] for line in recovered].count(run.orphan) == 1, "one WARN line per orphan"
    started = [i for i, line in enumerate(lines) if line["msg"] == "job started"]
    assert started and msgs.index("orphaned job recovered") < min(started), "recovery before any dispatch"
    gateway = lines[msgs.index("gateway started")]
    assert {"posture", "api_listen", "plugins_loaded", "version"} <= gateway.keys()
    assert "webhooks_listen" not in gateway, "no endpoint, no listener (a null field is left out of every line)"
    assert gateway["posture"] == "gateway" and gateway["plugins_loaded"] >= 1
    assert msgs.index("configuration loaded") < msgs.index("gateway started")

    with closing(run.gw.db()) as db:
        types = [t for (t,) in db.execute("SELECT type FROM events ORDER BY position")]
    second = len(types) - types[::-1].index("ConfigSnapshotted") - 1  # the second boot's startup snapshot
    boot2 = types[second:]
    assert "GatewayStarted" in boot2 and boot2.index("JobRecovered") < boot2.index("JobStarted")
    assert types.count("GatewayStarted") == 2 and types[-1] == "GatewayStopped"
    with closing(run.gw.db()) as db:
        row = db.execute("SELECT status, attempt FROM job_queue WHERE job_id = ?", (run.orphan,)).fetchone()
    assert row == ("succeeded", 2), "the job running at the kill was recovered and completed"


def test_every_log_line_is_json_with_the_spec_fields_and_job_lines_name_their_job(run: Run) -> None:
    import json

    text = run.gw.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line parses
    assert lines
    for line in lines:
        assert TIME.match(line["time"]), line
        assert line["level"] in LEVELS, line
        assert isinstance(line["msg"], str) and line["msg"]
        assert line["component"] in COMPONENTS, line
    job_lines = [line for line in lines if line["msg"] in ("job started", "job completed")]
    assert {line["job_id"] for line in job_lines} >= set(run.jobs)
    for line in job_lines:
        assert line["plugin"] == "behave" and line["command"] == "poll" and line["attempt"] >= 1, line
    completed = [line for line in job_lines if line["msg"] == "job completed"]
    assert {line["status"] for line in completed} >= {"succeeded", "failed"}
    assert all(isinstance(line["duration_ms"], int) for line in completed)
    stderr = {line["stderr"].strip(): line for line in lines if line["msg"] == "plugin stderr"}
    assert stderr["note from a job that succeeded"]["level"] == "DEBUG"
    assert stderr["note from a job that failed"]["level"] == "WARN"
    assert stderr["note from a job that failed"]["job_id"] == run.jobs[5]
    http = [line for line in lines if line["msg"] == "http request"]
    assert http and all({"method", "path", "status", "duration_ms", "request_id"} <= line.keys() for line in http)
    assert any(line["path"] == "/healthz" for line in http)
    assert "never-logged" not in text, "query strings (tokens) never reach the log"


def test_after_kill_9_restart_and_graceful_stop_the_db_file_alone_holds_every_event(run: Run, tmp_path: Path) -> None:
    with closing(run.gw.db()) as db:
        logged = db.execute("SELECT position, type FROM events ORDER BY position").fetchall()
    copied = db_file_alone_events(run.gw.state_db, tmp_path / "copy")
    assert copied == logged and copied[-1][1] == "GatewayStopped"
    assert [p for p, _ in copied] == list(range(1, len(copied) + 1))


def test_a_database_from_a_newer_release_is_refused_with_the_exact_message(run: Run, tmp_path: Path) -> None:
    from ductile.events.schema import LOG_SCHEMA_VERSION

    saved = tmp_path / "saved.db"
    shutil.copyfile(run.gw.state_db, saved)  # the stop left no -wal: the file is the whole DB
    try:
        conn = sqlite3.connect(run.gw.state_db, isolation_level=None)
        try:
            conn.execute("UPDATE ductile_meta SET value = ? WHERE key = 'log_schema'", (str(LOG_SCHEMA_VERSION + 1),))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        head = run.gw.state_db.stat().st_size
        proc = run.gw.cli("system", "start", "--config", str(run.gw.root), timeout=60)
        message = (f"state database {run.gw.state_db} has event log schema {LOG_SCHEMA_VERSION + 1}, "
                   f"newer than this Ductile supports ({LOG_SCHEMA_VERSION})")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr == message + "\n"
        errors = [line for line in proc.stdout.splitlines() if '"ERROR"' in line]
        assert len(errors) == 1 and message in errors[0]
        assert run.gw.state_db.stat().st_size == head, "the refused DB is not modified"
        wait_until(lambda: not (run.gw.root / "data" / "ductile.pid").exists()
                   or _lock_free(run.gw.root / "data" / "ductile.pid"), 5, what="the PID lock released")
    finally:
        shutil.copyfile(saved, run.gw.state_db)


def _lock_free(path: Path) -> bool:
    import fcntl

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True
