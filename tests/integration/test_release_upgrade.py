"""Data outlives releases: a state database written by an earlier release opens on this one.

Each ``tests/fixtures/releases/r<N>-<commit>/`` holds a state DB frozen from that release's real
gateway (made by ``tests/fixtures/releases/make_release_db.py``), the plugins and config its
history ran with, and ``history.json``: what that release's API and CLI showed. From release 2 on
it also holds the vault (``vault.age``), its age identity (a test fixture, not a secret) and the
``.checksums`` that attest the plugin. Every test runs once per frozen release, the CURRENT code on
a copy of it, and checks what a user would notice after upgrading: the log still reads, the gateway
boots, every old job keeps its status, result and attempt count, plugin state carries over, new
work runs, and (with a vault) every secret, principal, grant and audit row is still there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from ductile.events.codec import decode, to_builtins
from ductile.events.log import verify_chain
from ductile.projections.registry import ALL
from ductile.webhook_signatures import sign
from tests.integration.daemon import Daemon, free_port
from tests.polling import wait_until

RELEASES = Path(__file__).resolve().parents[1] / "fixtures" / "releases"
RELEASE_DIRS = sorted(d for d in RELEASES.iterdir() if (d / "state.db").exists())
ATTEMPT_KEYS = ("attempt", "outcome", "exit_code", "error")
SHOWN = ("status", "plugin", "command", "attempt", "max_attempts", "result", "last_error", "parent_job_id",
         "pipeline", "step_id", "submitted_by")
VAULT_FILES = ("vault.age", "age.key")  # copied as they are; .checksums is moved to the copy's paths
CURRENT_VERSIONS = {p.name: p.version for p in ALL}


class Release(msgspec.Struct, frozen=True):
    """One frozen release: its directory and what it showed (history.json)."""

    root: Path
    history: dict[str, Any]

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        jobs: dict[str, dict[str, Any]] = self.history["jobs"]
        return jobs

    @property
    def has_vault(self) -> bool:
        return "vault" in self.history


def needs_vault(release: Release) -> None:
    if not release.has_vault:
        pytest.skip(f"{release.root.name} predates the vault")


@pytest.fixture(scope="module", params=RELEASE_DIRS, ids=[d.name for d in RELEASE_DIRS])
def release(request: pytest.FixtureRequest) -> Release:
    root: Path = request.param
    return Release(root, json.loads((root / "history.json").read_text()))


@pytest.fixture(scope="module", autouse=True)
def own_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No age key or vault token of the tester's is found: the fixture's identity must open the vault."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        for name in ("DUCTILE_AGE_KEY_FILE", "DUCTILE_VAULT_TOKEN", "DUCTILE_API_KEY"):
            mp.delenv(name, raising=False)
        yield


def release_copy(release: Release, dest: Path) -> Path:
    """A copy of the frozen DB (the fixture itself is never opened for writing)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(release.root / "state.db", dest)
    return dest


def release_gateway(release: Release, root: Path) -> Daemon:
    """A current-code daemon configured as the release ran its history, its state DB a fixture copy."""
    ran_with = yaml.safe_load((release.root / "gateway.yaml").read_text())
    gw = Daemon(root, ran_with["plugins"], service=ran_with["service"], plugin_roots=[str(release.root / "plugins")])
    gw.config["pipelines"] = ran_with["pipelines"]
    if "api" in ran_with:  # the release's own tokens (a vault secret_ref) beside the test's admin token
        gw.config["api"]["auth"]["tokens"] += ran_with["api"]["auth"]["tokens"]
    if "webhooks" in ran_with:
        gw.config["webhooks"] = {"listen": f"127.0.0.1:{free_port()}", **ran_with["webhooks"]}
    gw.write_config()
    if release.has_vault:
        for name in VAULT_FILES:
            shutil.copyfile(release.root / name, root / name)
        (root / "age.key").chmod(0o600)
        # The release attested the plugin by absolute path: move its paths, keep its hashes.
        frozen = release.history["frozen_paths"]
        checksums = (release.root / ".checksums").read_text()
        checksums = checksums.replace(frozen["plugins"], str(release.root / "plugins"))
        (root / ".checksums").write_text(checksums.replace(frozen["config_dir"], str(root)))
    release_copy(release, gw.state_db)
    return gw


def as_shown(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in SHOWN}


@pytest.fixture(scope="module")
def upgraded(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One current-code gateway per release, started on a copy of its DB."""
    gw = release_gateway(release, tmp_path_factory.mktemp(f"upgrade-{release.root.name}") / "gw")
    gw.start()
    yield gw
    gw.close()


def test_every_release_event_decodes_with_the_current_codec_and_the_chain_holds(release: Release,
                                                                                 tmp_path: Path) -> None:
    db = sqlite3.connect(release_copy(release, tmp_path / "state.db"))
    try:
        rows = db.execute("SELECT position, type, schema, data FROM events ORDER BY position").fetchall()
        decoded = {pos: decode(type_, schema, data) for pos, type_, schema, data in rows}
        report = verify_chain(db)
    finally:
        db.close()
    history = release.history
    assert len(decoded) == history["log_head"]
    assert sorted({type(e).__name__ for e in decoded.values()}) == history["event_types"]
    assert (report.ok, report.events, report.problem) == (True, history["log_head"], None)
    deduped = [{k: v for k, v in to_builtins(e).items() if k in history["deduped"][0]}
               for e in decoded.values() if type(e).__name__ == "JobDeduped"]
    assert deduped == history["deduped"], "the release's dedupe decision reads back unchanged"


def test_the_gateway_boots_on_the_release_db_and_rebuilds_the_changed_projections(release: Release,
                                                                                  upgraded: Daemon) -> None:
    was = release.history["projection_checkpoints"]
    if release.root.name.startswith("r1-"):  # release 1 predates queue 3 / ledger 3: boot must rebuild them
        assert (was["queue"][0], was["ledger"][0]) != (CURRENT_VERSIONS["queue"], CURRENT_VERSIONS["ledger"])
    with upgraded.db() as db:
        now = {name: (version, position) for name, version, position in
               db.execute("SELECT name, version, position FROM projections")}
        head = db.execute("SELECT max(position) FROM events").fetchone()[0]
    assert {name: version for name, (version, _) in now.items()} == CURRENT_VERSIONS, "every projection is current"
    assert set(now) >= set(was), "no projection of the release was lost"
    assert all(position == head for _, position in now.values()), now  # every projection caught up


def test_release_jobs_keep_status_result_and_attempts_in_the_api(release: Release, upgraded: Daemon) -> None:
    jobs = release.jobs
    for name, then in jobs.items():
        assert as_shown(upgraded.job(then["job_id"])) == as_shown(then), name
    listed = upgraded.client.get("/jobs", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    statuses = {j["job_id"]: j["status"] for j in listed.json()["jobs"]}
    assert {then["job_id"]: statuses.get(then["job_id"]) for then in jobs.values()} == {
        then["job_id"]: then["status"] for then in jobs.values()}
    tree = upgraded.client.get(f"/job/{jobs['pipeline_root']['job_id']}/tree").json()
    assert [(n["job_id"], n["status"]) for n in tree] == [
        (jobs["pipeline_root"]["job_id"], "succeeded"), (jobs["pipeline_child"]["job_id"], "succeeded")]
    if "gated_skipped" in jobs:  # the step its `if:` skipped, and the step after it that ran
        gated = upgraded.client.get(f"/job/{jobs['gated_root']['job_id']}/tree").json()
        assert {(n["job_id"], n["status"]) for n in gated} >= {(jobs["gated_skipped"]["job_id"], "skipped"),
                                                               (jobs["gated_after"]["job_id"], "succeeded")}


def inspected(gw: Daemon, job_id: str) -> dict[str, Any]:
    """``ductile job inspect --json``: the job and its attempts as this release shows them."""
    out = gw.cli("job", "inspect", job_id, "--json", "--config", str(gw.root))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    return {**as_shown(report["job"]), "attempts": [{k: a.get(k) for k in ATTEMPT_KEYS} for a in report["attempts"]]}


def as_inspected(then: dict[str, Any]) -> dict[str, Any]:
    return {**as_shown(then), "attempts": then["attempts"]}


def test_job_inspect_shows_release_jobs_with_their_attempts(release: Release, upgraded: Daemon) -> None:
    jobs = release.jobs
    for name in ("failed", "retried_ok", "pipeline_child", "scheduled", "webhook", "gated_skipped"):
        if name in jobs:
            assert inspected(upgraded, jobs[name]["job_id"]) == as_inspected(jobs[name]), name
    assert [a["outcome"] for a in jobs["failed"]["attempts"]] == ["error", "error", "error"]
    assert [a["outcome"] for a in jobs["retried_ok"]["attempts"]] == ["error", "ok"]


def test_a_new_job_runs_on_the_release_db_and_sees_the_release_plugin_state(release: Release,
                                                                            upgraded: Daemon) -> None:
    assert release.history["plugin_state"]["worker"] == {"count": 2}
    job = upgraded.wait_job(upgraded.trigger("worker", payload={"mode": "state_bump"}))
    assert (job["status"], job["attempt"], job["result"]["result"]) == ("succeeded", 1, "count 3")
    # The log the release wrote and the events appended now form one unbroken chain.
    with upgraded.db() as db:
        report = verify_chain(db)
    assert report.ok and report.events > release.history["log_head"], report


def test_a_new_pipeline_runs_on_the_release_db(upgraded: Daemon) -> None:
    order = {"type": "order.placed", "payload": {"order": "B-2"}, "dedupe_key": "order-B-2"}
    root = upgraded.wait_job(upgraded.trigger("worker", payload={"mode": "emit", "events": [order]}))
    assert root["status"] == "succeeded"

    def settled() -> list[dict[str, Any]] | None:
        nodes = upgraded.client.get(f"/job/{root['job_id']}/tree").json()
        return nodes if len(nodes) == 2 and all(n["status"] == "succeeded" for n in nodes) else None

    child = wait_until(settled, 30, what="the new order's ship step")[1]
    assert (child["pipeline"], child["step_id"]) == ("orders", "ship")
    assert upgraded.job(child["job_id"])["result"]["result"] == "shipped B-2"


def vault_cli(gw: Daemon, *args: str) -> Any:
    out = gw.cli(*args, "--json", "--config", str(gw.root))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_release_vault_opens_with_its_identity_and_lists_every_secret_and_principal(release: Release,
                                                                                       upgraded: Daemon) -> None:
    needs_vault(release)
    then = release.history["vault"]
    status = vault_cli(upgraded, "vault", "status")
    assert {k: status[k] for k in ("exists", "decrypts", "agreement", "secrets", "principals")} == {
        k: then["status"][k] for k in ("exists", "decrypts", "agreement", "secrets", "principals")}
    assert status["decrypts"] is True and status["agreement"] == "agree"
    assert vault_cli(upgraded, "vault", "list")["secrets"] == then["secrets"], "every secret keeps its metadata"
    assert vault_cli(upgraded, "vault", "list", "--principals")["principals"] == then["principals"]


def test_a_release_grant_still_resolves_at_a_spawn_and_the_audit_trail_reads_back(release: Release,
                                                                                  upgraded: Daemon) -> None:
    needs_vault(release)
    then = release.jobs["secrets_after_rotation"]["result"]["result"]
    job = upgraded.wait_job(upgraded.trigger("worker", payload={"mode": "secrets"}))
    assert (job["status"], job["result"]["result"]) == ("succeeded", then)  # the rolled and the manual secret
    rows = vault_cli(upgraded, "system", "vault-audit", "--limit", "1000")["rows"]
    old = release.history["vault"]["audit"]
    assert rows[-len(old):] == old, "the release's audit rows read back, oldest last"
    assert [(r["op"], r["secret_name"]) for r in rows[:2]] == [("deliver", "worker_key"), ("deliver", "smtp_pw")]
    assert all(f"job_id={job['job_id']}" == r["detail"] for r in rows[:2])


def test_the_vault_referenced_api_token_and_the_webhook_still_work(release: Release, upgraded: Daemon) -> None:
    needs_vault(release)
    token = release.history["api_token"]
    ok = release.jobs["ok"]["job_id"]
    read = httpx.get(f"{upgraded.url}/job/{ok}", headers={"Authorization": f"Bearer {token['value']}"}, timeout=10)
    assert (read.status_code, read.json()["status"]) == (200, "succeeded")
    hook = release.history["webhook"]
    body = json.dumps({"mode": "ok", "result": "hooked again"}).encode()
    listen = upgraded.config["webhooks"]["listen"]
    sent = wait_until(lambda: _post(f"http://{listen}{hook['path']}", body, sign(hook["secret"], body)), 10,
                      what="the webhook listener")
    assert sent.status_code == 202, sent.text
    job = upgraded.wait_job(sent.json()["job_id"])
    assert (job["status"], job["command"], job["submitted_by"], job["result"]["result"]) == (
        "succeeded", "handle", f"webhook:{hook['path']}", "hooked again")


def _post(url: str, body: bytes, signature: str) -> httpx.Response | None:
    try:
        return httpx.post(url, content=body, headers={"X-Hub-Signature-256": signature}, timeout=10)
    except httpx.ConnectError:
        return None


def test_system_rebuild_on_the_release_db_keeps_job_statuses(release: Release, tmp_path: Path) -> None:
    gw = release_gateway(release, tmp_path / "gw")  # never started: rebuild runs with the gateway stopped
    out = gw.cli("system", "rebuild", "--config", str(gw.root), "--json")
    assert out.returncode == 0, out.stderr
    rebuilt = {p["name"]: p["version"] for p in json.loads(out.stdout)["projections"]}
    assert (rebuilt["queue"], rebuilt["ledger"]) == (CURRENT_VERSIONS["queue"], CURRENT_VERSIONS["ledger"])
    for name, then in release.jobs.items():
        assert inspected(gw, then["job_id"]) == as_inspected(then), name


def _selfcheck(gw: Daemon) -> tuple[int, dict[str, dict[str, Any]]]:
    out = gw.cli("system", "selfcheck", "--config", str(gw.root), "--json")
    assert out.stderr == "", out.stderr
    return out.returncode, {c["name"]: c for c in json.loads(out.stdout)["checks"]}


def test_selfcheck_gates_the_upgrade_before_the_first_start_naming_what_the_start_rebuilds(release: Release,
                                                                                          tmp_path: Path) -> None:
    """operations.md §5: stop → replace the binary → selfcheck → start. Every projection stored at
    another version, and every one the release did not have, is named as what the start rebuilds."""
    gw = release_gateway(release, tmp_path / "gw")  # never started
    code, checks = _selfcheck(gw)
    assert code == 0, checks
    stored = release.history["projection_checkpoints"]
    for name, version in CURRENT_VERSIONS.items():
        if name not in stored:
            assert f"{name}: not stored yet, built at the next start ({version})" in checks["projection_replay"]["detail"]
        elif stored[name][0] != version:
            note = f"{name}: stored version {stored[name][0]}, rebuilt at the next start ({version})"
            assert note in checks["db_schema"]["detail"] and note in checks["projection_replay"]["detail"]
    assert checks["projection_replay"]["detail"].startswith(f"{_event_count(gw)} events replayed")
    if not release.has_vault:
        assert checks["vault_agreement"]["detail"] == "no vault"


def _event_count(gw: Daemon) -> int:
    with gw.db() as db:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def test_schedules_read_back_then_after_a_stop_selfcheck_replays_the_whole_log_identically(upgraded: Daemon) -> None:
    """Last of each release: it stops the upgraded gateway."""
    jobs = upgraded.client.get("/scheduler/jobs").json()["jobs"]
    assert [(j["plugin"], j["schedule_id"]) for j in jobs] == [("ticker", "hourly")]
    assert upgraded.stop() == 0
    code, checks = _selfcheck(upgraded)
    assert code == 0, checks
    assert "rebuilt at the next start" not in checks["projection_replay"]["detail"]
    assert "not stored yet" not in checks["db_schema"]["detail"]


def test_a_backup_of_the_release_db_before_the_first_start_works(release: Release, tmp_path: Path) -> None:
    gw = release_gateway(release, tmp_path / "gw")  # never started: no tables of later releases yet
    out = gw.cli("system", "backup", "--config", str(gw.root), "--scope", "db", "--to", str(tmp_path / "b.tar.gz"),
                 "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"].keys() >= {"db/ductile.sqlite"}



def test_the_upgrade_docs_freeze_a_release_with_the_generator_as_it_is_called() -> None:
    """docs/installing.md §3 shows maintainers how to freeze a release; the command must match the
    generator (running it needs a checkout of a past release, so its arguments are checked here)."""
    page = (RELEASES.parents[2] / "docs" / "installing.md").read_text()
    block = page.split("Each release's frozen log lives under", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    command = next(line for line in block.splitlines() if "make_release_db.py" in line)
    [out_dir] = re.findall(r"releases/(r\d+-[0-9a-f]+)", command)
    assert (RELEASES / out_dir / "state.db").exists(), f"the docs freeze {out_dir}, which is not a frozen release"
    assert "--scenario vault" in command
    root = RELEASES.parents[2]  # on PYTHONPATH, as the docs' command puts its checkout
    usage = subprocess.run([sys.executable, str(RELEASES / "make_release_db.py"), "--help"], capture_output=True,
                           text=True, timeout=60, cwd=root, check=True,
                           env={**os.environ, "PYTHONPATH": str(root)}).stdout
    assert "--scenario {jobs,vault}" in usage
    assert all((d / "README.md").exists() for d in RELEASE_DIRS), "every frozen release says what it holds"
