"""`system backup` and `system restore` (operations.md §7–8) against one real gateway.

The gateway runs jobs on a schedule and holds a vault secret; backups are taken while it runs, at
each scope. The last test stops it, wipes the config dir, the state dir, the plugin root and the
env file, restores from the archive taken while it ran, gives the custodied key back, starts it,
and reads every job, the schedule and the vault record back through the API and the CLI.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.daemon import REPO, Daemon, seed_vault, wait_until

SECRET_NAME = "backup-canary"
SECRET_VALUE = "canary-value-never-in-an-archive-manifest"
ENV_LINE = "BACKUP_TEST_VAR=from-the-env-file\n"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, **(env or {})})


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


class Site:
    def __init__(self, root: Path, gw: Daemon, key: Path, admin: str) -> None:
        self.root, self.gw, self.key, self.admin = root, gw, key, admin
        self.plugins = root / "plugins"
        self.env_file = root / "env" / "app.env"
        self.out = root / "out"
        self.archives: dict[str, Path] = {}
        self.jobs_at_backup: dict[str, str] = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("backup")
    shutil.copytree(REPO / "tests" / "plugins" / "shellok", root / "plugins" / "shellok")
    (root / "env").mkdir()
    (root / "env" / "app.env").write_text(ENV_LINE)
    gw = Daemon(root / "gw", {"shellok": {"enabled": True, "schedules": [{"id": "tick", "every": "1s"}]}},
                plugin_roots=[str(root / "plugins")])
    gw.config["environment_vars"] = {"include": [str(root / "env" / "app.env")]}
    gw.write_config()
    key, admin = seed_vault(gw.root, {SECRET_NAME: SECRET_VALUE})
    gw.start()
    s = Site(root, gw, key, admin)
    try:
        yield s
    finally:
        gw.close()


def backup(s: Site, scope: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("system", "backup", "--to", str(s.out / f"{scope}.tar.gz"), "--scope", scope,
               "--config", str(s.gw.root), *extra, cwd=s.root)


def test_each_scope_taken_while_running_holds_exactly_its_ladder(site: Site) -> None:
    s = site
    for _ in range(3):
        assert s.gw.wait_job(s.gw.trigger("shellok"))["status"] == "succeeded"
    listed = s.gw.client.get("/jobs", params={"limit": 200}).json()
    s.jobs_at_backup = {j["job_id"]: j["status"] for j in listed["jobs"] if j["status"] == "succeeded"}
    plugin_files = {f"plugins/plugins/shellok/{p.name}" for p in (s.plugins / "shellok").iterdir()}
    always = {"BACKUP_MANIFEST.txt", "uid.txt", "db/ductile.sqlite"}
    config = {"config/config.yaml", "config/vault.age", "config/gateway.log"}  # the test daemon logs there
    expected = {
        "db": always,
        "config": always | config,
        "plugins": always | config | plugin_files,
        "all": always | config | plugin_files | {"env/env/app.env"},
    }
    for scope, names in expected.items():
        done = backup(s, scope, "--json")
        assert done.returncode == 0, done.stderr
        archive = s.out / f"{scope}.tar.gz"
        s.archives[scope] = archive
        held = members(archive)
        assert set(held) == names, scope
        assert not any(n.endswith("age.key") for n in held)  # the key, never, in any scope
        manifest = yaml.safe_load(held["BACKUP_MANIFEST.txt"])
        assert manifest == json.loads(done.stdout)  # --json prints the manifest
        assert manifest["scope"] == scope
        assert manifest["files"] == {n: hashlib.sha256(b).hexdigest() for n, b in held.items()
                                     if n != "BACKUP_MANIFEST.txt"}
        assert manifest["included"] == sorted(names)
        assert held["uid.txt"].decode().strip() == manifest["backup_uid"]
        assert SECRET_VALUE.encode() not in held["BACKUP_MANIFEST.txt"]
        assert os.stat(archive).st_mode & 0o777 == 0o600
    db_scope = yaml.safe_load(members(s.archives["db"])["BACKUP_MANIFEST.txt"])
    assert db_scope["vault"] is None and "config/vault.age" not in db_scope["files"]


def test_the_manifest_reads_without_extracting_and_pairs_the_key(site: Site) -> None:
    s = site
    text = subprocess.run(["tar", "-xzOf", str(s.archives["all"]), "BACKUP_MANIFEST.txt"],
                          capture_output=True, text=True, check=True).stdout
    manifest = yaml.safe_load(text)
    assert list(manifest) == [
        "ductile_version", "ductile_commit", "hostname", "created_at", "scope", "backup_uid", "source_db_path",
        "source_db_sha256", "source_config_dir", "included", "files", "vault", "excluded", "plugin_roots",
        "env_files", "config_external", "warnings"]
    recipient = manifest["vault"]["recipient"]
    assert recipient.startswith("age1")
    assert manifest["excluded"][0] == {
        "reason": "age key: keep it out-of-band (password manager); vault.age restores only with the key current"
                  f" at backup time (recipient {recipient}, backup_uid {manifest['backup_uid']})",
        "items": [str(s.key)]}
    assert manifest["source_db_sha256"] == manifest["files"]["db/ductile.sqlite"]
    assert manifest["plugin_roots"] == [{"archive_path": "plugins/plugins", "source_path": str(s.plugins)}]
    assert manifest["env_files"] == [{"archive_path": "env/env/app.env", "source_path": str(s.env_file)}]
    assert "env files contain secrets: encrypt the archive at rest" in manifest["warnings"]
    assert "config.yaml contains literal API token(s): treat this archive as secret" in manifest["warnings"]


def test_human_output_blocks_and_an_existing_destination_left_untouched(site: Site) -> None:
    s = site
    done = run("system", "backup", "--to", str(s.out / "human.tar.gz"), "--config", str(s.gw.root), cwd=s.root)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "INCLUDED (scope=config):" and "  + config/vault.age" in lines
    assert "EXCLUDED:" in lines and lines[lines.index("EXCLUDED:") - 1] == ""
    assert "WARNING: config.yaml contains literal API token(s): treat this archive as secret" in lines
    size = (s.out / "human.tar.gz").stat().st_size
    assert lines[-1].startswith(f"backup written: {s.out / 'human.tar.gz'} ({size} bytes, ")
    again = run("system", "backup", "--to", str(s.out / "human.tar.gz"), "--config", str(s.gw.root), cwd=s.root)
    assert again.returncode == 1
    assert again.stderr == f"error: destination already exists: {s.out / 'human.tar.gz'} (refusing to overwrite)\n"
    assert (s.out / "human.tar.gz").stat().st_size == size


def _tampered(source: Path, target: Path) -> None:
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for info in old:
            data = old.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "config/config.yaml":
                data += b"# an edit after the backup\n"
                info.size = len(data)
            new.addfile(info, io.BytesIO(data))


def test_a_tampered_archive_is_refused_with_nothing_written(site: Site) -> None:
    s = site
    bad = s.out / "tampered.tar.gz"
    _tampered(s.archives["all"], bad)
    target = s.root / "elsewhere"
    done = run("system", "restore", "--from", str(bad), "--config-dir", str(target), cwd=s.root)
    assert done.returncode == 1
    assert done.stderr == ("error: restore: archive member config/config.yaml does not match its sha256 in the"
                           " manifest\n")
    assert not target.exists()


def test_restore_after_a_wipe_with_the_custodied_key_brings_everything_back(site: Site) -> None:
    s = site
    archive = s.archives["all"]
    custody = s.root / "custody.key"
    shutil.copy2(s.key, custody)
    assert s.gw.stop() == 0
    running = run("system", "restore", "--from", str(archive), cwd=s.root)
    assert running.returncode == 1  # files exist: refused without --force, nothing moved
    assert running.stderr.startswith("error: restore: ") and running.stderr.endswith(" exists (use --force)\n")
    for gone in (s.gw.root, s.plugins, s.env_file.parent):
        shutil.rmtree(gone)

    without_key = run("system", "restore", "--from", str(archive), "--json", cwd=s.root)
    assert without_key.returncode == 1
    manifest = yaml.safe_load(members(archive)["BACKUP_MANIFEST.txt"])
    instruction = (f"restore the age key for recipient {manifest['vault']['recipient']} (backup_uid"
                   f" {manifest['backup_uid']}) to {s.gw.root / 'age.key'} with mode 0600, then run"
                   " 'ductile system selfcheck'")
    assert without_key.stderr == f"error: {instruction}\n"
    report: dict[str, Any] = json.loads(without_key.stdout)
    assert report["error"] == instruction
    assert {r["archive_path"] for r in report["restored"]} == set(manifest["files"]) - {"uid.txt"}
    assert s.env_file.read_text() == ENV_LINE and (s.plugins / "shellok" / "run.sh").stat().st_mode & 0o100

    shutil.copy2(custody, s.gw.root / "age.key")
    os.chmod(s.gw.root / "age.key", 0o600)
    forced = run("system", "restore", "--from", str(archive), "--force", cwd=s.root)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert f"restored {len(report['restored'])} file(s) from {archive}" in forced.stdout.splitlines()
    assert "Selfcheck: PASS" in forced.stdout
    assert list(s.gw.root.glob("config.yaml.pre-restore-*"))

    s.gw.start()
    for job_id, status in s.jobs_at_backup.items():
        assert s.gw.job(job_id)["status"] == status
    before = set(s.jobs_at_backup)

    def scheduled_again() -> bool:
        listed = s.gw.client.get("/jobs", params={"plugin": "shellok", "limit": 200}).json()["jobs"]
        return any(j["job_id"] not in before and j["submitted_by"] != "api" and j["status"] == "succeeded"
                   for j in listed)

    wait_until(scheduled_again, 20, what="the restored schedule to run shellok")
    vault = run("vault", "list", "--json", "--config", str(s.gw.root), cwd=s.root,
                env={"DUCTILE_VAULT_TOKEN": s.admin})
    assert vault.returncode == 0, vault.stderr
    assert SECRET_NAME in [x["name"] for x in json.loads(vault.stdout)["secrets"]]
    status = run("vault", "status", "--json", "--config", str(s.gw.root), cwd=s.root)
    assert json.loads(status.stdout)["agreement"] == "agree"


def test_a_config_that_does_not_validate_still_backs_up_with_the_problem_as_a_warning(tmp_path: Path) -> None:
    """§7: the config only has to parse; a validation problem is a manifest warning, not a refusal."""
    from ductile.events.log import EventLog
    from ductile.projections.registry import default_runner

    conf = tmp_path / "etc"
    (conf / "plugins").mkdir(parents=True)
    (conf / "config.yaml").write_text("state:\n  path: data/ductile.db\nplugin_roots: [plugins]\n"
                                      "service:\n  max_workers: 0\n")
    (conf / "data").mkdir()
    EventLog(conf / "data" / "ductile.db", "full", default_runner()).open_sync().close()
    check = run("config", "check", "--config", str(conf), cwd=tmp_path)
    assert check.returncode == 1  # it really does not validate
    done = run("system", "backup", "--to", str(tmp_path / "b.tar.gz"), "--config", str(conf), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "WARNING: config.yaml:5: service.max_workers must be > 0\n" in done.stdout
    manifest = yaml.safe_load(members(tmp_path / "b.tar.gz")["BACKUP_MANIFEST.txt"])
    assert "config.yaml:5: service.max_workers must be > 0" in manifest["warnings"]
    unparsable = tmp_path / "bad"
    unparsable.mkdir()
    (unparsable / "config.yaml").write_text("state: [unclosed\n")
    refused = run("system", "backup", "--to", str(tmp_path / "c.tar.gz"), "--config", str(unparsable), cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.startswith("config error: ")
    assert not (tmp_path / "c.tar.gz").exists()
