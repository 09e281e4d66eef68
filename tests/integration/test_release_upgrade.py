"""Data outlives releases: a state database written by an earlier release opens on this one.

Each ``tests/fixtures/releases/r<N>-<commit>/`` holds a state DB frozen from that release's real
gateway (made by ``tests/fixtures/releases/make_release_db.py``), the plugins and config its
history ran with, and ``history.json``: what that release's API showed for each job. The tests run
the CURRENT code on a copy of it and check what a user would notice after upgrading: the log still
reads, the gateway boots, every old job keeps its status, result and attempt count, plugin state
carries over, and new work runs.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ductile.events.codec import decode, to_builtins
from ductile.events.log import verify_chain
from ductile.projections import ledger, queue
from tests.integration.daemon import Daemon

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "releases" / "r1-5c55a71"
HISTORY: dict[str, Any] = json.loads((RELEASE / "history.json").read_text())
JOBS: dict[str, dict[str, Any]] = HISTORY["jobs"]
ATTEMPT_KEYS = ("attempt", "outcome", "exit_code", "error")
SHOWN = ("status", "plugin", "command", "attempt", "max_attempts", "result", "last_error", "parent_job_id",
         "pipeline", "step_id", "submitted_by")


def release_copy(dest: Path) -> Path:
    """A copy of the frozen DB (the fixture itself is never opened for writing)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RELEASE / "state.db", dest)
    return dest


def release_gateway(root: Path) -> Daemon:
    """A current-code daemon configured as the release ran its history, its state DB a fixture copy."""
    ran_with = yaml.safe_load((RELEASE / "gateway.yaml").read_text())
    gw = Daemon(root, ran_with["plugins"], service=ran_with["service"], plugin_roots=[str(RELEASE / "plugins")])
    gw.config["pipelines"] = ran_with["pipelines"]
    gw.write_config()
    release_copy(gw.state_db)
    return gw


def as_shown(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in SHOWN}


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    gw = release_gateway(tmp_path_factory.mktemp("upgrade") / "gw")
    gw.start()
    yield gw
    gw.close()


def test_every_release_event_decodes_with_the_current_codec_and_the_chain_holds(tmp_path: Path) -> None:
    db = sqlite3.connect(release_copy(tmp_path / "state.db"))
    try:
        rows = db.execute("SELECT position, type, schema, data FROM events ORDER BY position").fetchall()
        decoded = {pos: decode(type_, schema, data) for pos, type_, schema, data in rows}
        report = verify_chain(db)
    finally:
        db.close()
    assert len(decoded) == HISTORY["log_head"]
    assert sorted({type(e).__name__ for e in decoded.values()}) == HISTORY["event_types"]
    assert (report.ok, report.events, report.problem) == (True, HISTORY["log_head"], None)
    deduped = [{k: v for k, v in to_builtins(e).items() if k in HISTORY["deduped"][0]}
               for e in decoded.values() if type(e).__name__ == "JobDeduped"]
    assert deduped == HISTORY["deduped"], "the release's dedupe decision reads back unchanged"


def test_the_gateway_boots_on_the_release_db_and_rebuilds_the_changed_projections(upgraded: Daemon) -> None:
    was = HISTORY["projection_checkpoints"]
    assert (was["queue"][0], was["ledger"][0]) != (queue.PROJECTION.version, ledger.PROJECTION.version), (
        "the fixture predates the current queue/ledger versions, so boot must rebuild them")
    with upgraded.db() as db:
        now = {name: (version, position) for name, version, position in
               db.execute("SELECT name, version, position FROM projections")}
        head = db.execute("SELECT max(position) FROM events").fetchone()[0]
    assert now["queue"][0] == queue.PROJECTION.version
    assert now["ledger"][0] == ledger.PROJECTION.version
    assert set(now) >= set(was), "no projection of the release was lost"
    assert all(position == head for _, position in now.values()), now  # every projection caught up


def test_release_jobs_keep_status_result_and_attempts_in_the_api(upgraded: Daemon) -> None:
    for name, then in JOBS.items():
        assert as_shown(upgraded.job(then["job_id"])) == as_shown(then), name
    listed = upgraded.client.get("/jobs", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    statuses = {j["job_id"]: j["status"] for j in listed.json()["jobs"]}
    assert {then["job_id"]: statuses.get(then["job_id"]) for then in JOBS.values()} == {
        then["job_id"]: then["status"] for then in JOBS.values()}
    tree = upgraded.client.get(f"/job/{JOBS['pipeline_root']['job_id']}/tree").json()
    assert [(n["job_id"], n["status"]) for n in tree] == [
        (JOBS["pipeline_root"]["job_id"], "succeeded"), (JOBS["pipeline_child"]["job_id"], "succeeded")]


def inspected(gw: Daemon, job_id: str) -> dict[str, Any]:
    """``ductile job inspect --json``: the job and its attempts as this release shows them."""
    out = gw.cli("job", "inspect", job_id, "--json", "--config", str(gw.root))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    return {**as_shown(report["job"]), "attempts": [{k: a.get(k) for k in ATTEMPT_KEYS} for a in report["attempts"]]}


def as_inspected(then: dict[str, Any]) -> dict[str, Any]:
    return {**as_shown(then), "attempts": then["attempts"]}


def test_job_inspect_shows_release_jobs_with_their_attempts(upgraded: Daemon) -> None:
    for name in ("failed", "retried_ok", "pipeline_child", "scheduled"):
        assert inspected(upgraded, JOBS[name]["job_id"]) == as_inspected(JOBS[name]), name
    assert [a["outcome"] for a in JOBS["failed"]["attempts"]] == ["error", "error", "error"]
    assert [a["outcome"] for a in JOBS["retried_ok"]["attempts"]] == ["error", "ok"]


def test_a_new_job_runs_on_the_release_db_and_sees_the_release_plugin_state(upgraded: Daemon) -> None:
    assert HISTORY["plugin_state"]["worker"] == {"count": 2}
    job = upgraded.wait_job(upgraded.trigger("worker", payload={"mode": "state_bump"}))
    assert (job["status"], job["attempt"], job["result"]["result"]) == ("succeeded", 1, "count 3")
    # The log the release wrote and the events appended now form one unbroken chain.
    with upgraded.db() as db:
        report = verify_chain(db)
    assert report.ok and report.events > HISTORY["log_head"], report


def test_system_rebuild_on_the_release_db_keeps_job_statuses(tmp_path: Path) -> None:
    gw = release_gateway(tmp_path / "gw")  # never started: rebuild runs with the gateway stopped
    out = gw.cli("system", "rebuild", "--config", str(gw.root), "--json")
    assert out.returncode == 0, out.stderr
    rebuilt = {p["name"]: p["version"] for p in json.loads(out.stdout)["projections"]}
    assert (rebuilt["queue"], rebuilt["ledger"]) == (queue.PROJECTION.version, ledger.PROJECTION.version)
    for name, then in JOBS.items():
        assert inspected(gw, then["job_id"]) == as_inspected(then), name


def _selfcheck(gw: Daemon) -> tuple[int, dict[str, dict[str, Any]]]:
    out = gw.cli("system", "selfcheck", "--config", str(gw.root), "--json")
    assert out.stderr == "", out.stderr
    return out.returncode, {c["name"]: c for c in json.loads(out.stdout)["checks"]}


def test_selfcheck_gates_the_upgrade_before_the_first_start_naming_what_the_start_rebuilds(tmp_path: Path) -> None:
    """operations.md §5: stop → replace the binary → selfcheck → start. The release DB predates
    projections of this release (vault, audit, webhooks) and stores older queue/ledger versions."""
    gw = release_gateway(tmp_path / "gw")  # never started
    code, checks = _selfcheck(gw)
    assert code == 0, checks
    queue_note = f"queue: stored version {HISTORY['projection_checkpoints']['queue'][0]}, rebuilt at the next start ({queue.PROJECTION.version})"
    assert queue_note in checks["db_schema"]["detail"] and queue_note in checks["projection_replay"]["detail"]
    assert "vault: not stored yet, built at the next start (1)" in checks["projection_replay"]["detail"]
    assert checks["projection_replay"]["detail"].startswith(f"{_event_count(gw)} events replayed")
    assert checks["vault_agreement"]["detail"] == "no vault"


def _event_count(gw: Daemon) -> int:
    with gw.db() as db:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def test_schedules_read_back_then_after_a_stop_selfcheck_replays_the_whole_log_identically(upgraded: Daemon) -> None:
    """Last in this module: it stops the upgraded gateway."""
    jobs = upgraded.client.get("/scheduler/jobs").json()["jobs"]
    assert [(j["plugin"], j["schedule_id"]) for j in jobs] == [("ticker", "hourly")]
    assert upgraded.stop() == 0
    code, checks = _selfcheck(upgraded)
    assert code == 0, checks
    assert "rebuilt at the next start" not in checks["projection_replay"]["detail"]
    assert "not stored yet" not in checks["db_schema"]["detail"]


def test_a_backup_of_the_release_db_before_the_first_start_works(tmp_path: Path) -> None:
    gw = release_gateway(tmp_path / "gw")  # never started: no vault tables yet
    out = gw.cli("system", "backup", "--config", str(gw.root), "--scope", "db", "--to", str(tmp_path / "b.tar.gz"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"].keys() >= {"db/ductile.sqlite"}
