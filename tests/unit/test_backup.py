"""Backup scope ladders, refusals and the restore's archive checks (operations.md §7–8), without a gateway."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from ductile.app.backup import BackupError, create_backup, load_for_backup, plan_backup
from ductile.app.backup_manifest import BackupScope, UnknownScope, parse_scope
from ductile.app.restore import RestoreError, plan_targets, restore_archive, verify_archive
from ductile.config.discovery import find_config
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.config.model import Config
from ductile.events.log import EventLog
from ductile.projections.registry import default_runner
from ductile.system.pidlock import PidLock, pid_path


@pytest.mark.parametrize(("text", "scope"), [("", BackupScope.CONFIG), (None, BackupScope.CONFIG),
                                             (" ALL ", BackupScope.ALL), ("Db", BackupScope.DB),
                                             ("plugins", BackupScope.PLUGINS)])
def test_scope_is_trimmed_case_insensitive_and_defaults_to_config(text: str | None, scope: BackupScope) -> None:
    assert parse_scope(text) is scope


def test_an_unknown_scope_names_the_choices() -> None:
    with pytest.raises(UnknownScope) as caught:
        parse_scope("everything")
    assert str(caught.value) == 'unknown scope "everything" (want db|config|plugins|all)'


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A config dir holding everything §7 names: things to archive and things never to."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    d = tmp_path / "etc"
    (d / "plugins" / "p" / "__pycache__").mkdir(parents=True)
    (d / "plugins" / "p" / "run.py").write_text("print()\n")
    (d / "plugins" / "p" / "run.pyc").write_text("x")
    (d / "plugins" / "p" / "__pycache__" / "run.cpython.pyc").write_text("x")
    (d / "plugins" / "p" / "manifest.yaml").write_text("name: p\n")
    for never in ("backups/old.tar.gz", "secret/x", "data/ductile.db-wal", "data/ductile.db-shm", "data/ductile.pid"):
        (d / never).parent.mkdir(parents=True, exist_ok=True)
        (d / never).write_text("x")
    (d / "age.key").write_text("AGE-SECRET-KEY-1...\n")
    (d / "age.key.rotate-new").write_text("x")
    (d / "app.env").write_text("A=1\n")
    (d / "loose.env").write_text("B=2\n")
    (d / "api.yaml").write_text("api:\n  auth:\n    tokens:\n      - token: abcdefghijklmnop\n        scopes: ['*']\n")
    (d / "config.yaml").write_text(
        "state:\n  path: data/ductile.db\nplugin_roots: [plugins]\ninclude: [api.yaml]\n"
        "environment_vars:\n  include: [app.env]\n")
    config = load_config(find_config(None, str(d)), environ={"HOME": str(tmp_path / "home")})
    EventLog(config.state_path, "full", default_runner()).open_sync().close()
    return config


def _names(cfg: Config, scope: BackupScope) -> set[str]:
    return {name for name, _ in plan_backup(cfg, scope, cfg.source.config_dir / "age.key", frozenset()).members}


def test_each_scope_adds_exactly_its_rung_and_never_the_key_sidecars_or_nested_dirs(cfg: Config) -> None:
    config = {"config/config.yaml", "config/api.yaml"}
    plugin = {"plugins/plugins/p/run.py", "plugins/plugins/p/manifest.yaml"}  # no *.pyc, no __pycache__
    got = {s: _names(cfg, s) for s in BackupScope}
    assert got[BackupScope.DB] == set()
    assert got[BackupScope.CONFIG] == config
    assert got[BackupScope.PLUGINS] == config | plugin
    assert got[BackupScope.ALL] == config | plugin | {"config/loose.env", "env/etc/app.env"}


def test_the_plan_records_the_ladder_and_the_literal_token_warning(cfg: Config) -> None:
    plan = plan_backup(cfg, BackupScope.CONFIG, None, frozenset())
    reasons = [e.reason for e in plan.excluded]
    assert reasons == ["runtime sidecars / pid / nested backups dir", "scope=config < plugins", "scope=config < all"]
    assert plan.excluded[0].items == ["data/ductile.db", "ductile.db-wal", "ductile.db-shm", "ductile.pid", "backups"]
    assert plan.warnings == ["api.yaml contains literal API token(s): treat this archive as secret"]
    every = plan_backup(cfg, BackupScope.ALL, None, frozenset())
    assert "env files contain secrets: encrypt the archive at rest" in every.warnings


def test_an_existing_destination_is_refused_and_left_untouched(cfg: Config, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "b.tar.gz"
    dest.parent.mkdir()
    dest.write_text("keep me")
    with pytest.raises(BackupError) as caught:
        create_backup(cfg, dest, BackupScope.CONFIG)
    assert str(caught.value) == f"destination already exists: {dest} (refusing to overwrite)"
    assert dest.read_text() == "keep me"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["b.tar.gz"]


def test_a_failed_backup_leaves_nothing_at_the_destination(cfg: Config, tmp_path: Path) -> None:
    cfg.state_path.unlink()
    dest = tmp_path / "out" / "b.tar.gz"
    with pytest.raises(BackupError) as caught:
        create_backup(cfg, dest, BackupScope.DB)
    assert str(caught.value) == f"state database {cfg.state_path} not found"
    assert not dest.exists()


def test_a_backup_archive_mode_and_members(cfg: Config, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "b.tar.gz"
    result = create_backup(cfg, dest, BackupScope.DB)
    assert dest.stat().st_mode & 0o777 == 0o600 and (dest.parent.stat().st_mode & 0o777) == 0o700
    with tarfile.open(dest) as tar:
        assert sorted(tar.getnames()) == ["BACKUP_MANIFEST.txt", "db/ductile.sqlite", "uid.txt"]
        assert tar.getmember("BACKUP_MANIFEST.txt").mode == 0o644
    assert sorted(p.name for p in dest.parent.iterdir()) == ["b.tar.gz"]  # no snapshot or temp left
    assert len(result.manifest.backup_uid) == 5 and set(result.manifest.backup_uid) <= set("abcdefghijklmnopqrstuvwxyz234567")


def _rewrite(source: Path, target: Path, extra: tarfile.TarInfo | None = None, data: bytes = b"") -> None:
    with tarfile.open(source) as old, tarfile.open(target, "w:gz") as new:
        for info in old:
            new.addfile(info, old.extractfile(info))
        if extra is not None:
            new.addfile(extra, io.BytesIO(data) if extra.isfile() else None)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _info("extra.txt"), "restore: archive member extra.txt is not in the manifest"),
    (lambda: _info("/etc/passwd"), "restore: archive member /etc/passwd has an absolute path"),
    (lambda: _info("config/../../x"), "restore: archive member config/../../x escapes the archive (..)"),
    (lambda: _info("config/link", tarfile.SYMTYPE), "restore: archive member config/link is a link"),
])
def test_restore_refuses_a_bad_member_before_writing(cfg: Config, tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.tar.gz"
    create_backup(cfg, good, BackupScope.CONFIG)
    bad = tmp_path / "bad.tar.gz"
    _rewrite(good, bad, make(), b"x")
    with pytest.raises(RestoreError) as caught:
        restore_archive(bad, config_dir=tmp_path / "new", current_state_path=lambda: tmp_path / "db", force=True)
    assert caught.value.message == message
    assert not (tmp_path / "new").exists()


def _info(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 1 if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info


def test_restore_refuses_an_archive_without_a_manifest(tmp_path: Path) -> None:
    bare = tmp_path / "bare.tar.gz"
    with tarfile.open(bare, "w:gz") as tar:
        tar.addfile(_info("uid.txt"), io.BytesIO(b"x"))
    with pytest.raises(RestoreError) as caught:
        verify_archive(bare)
    assert caught.value.message == "restore: archive member BACKUP_MANIFEST.txt is missing"


def test_restore_refuses_while_the_gateway_holds_the_lock(cfg: Config, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    manifest = create_backup(cfg, archive, BackupScope.CONFIG).manifest
    assert yaml.safe_load(io.StringIO(manifest.source_config_dir)) == str(cfg.source.config_dir)
    with PidLock(pid_path(cfg.state_path)) as held:
        assert held.path.exists()
        with pytest.raises(RestoreError) as caught:
            restore_archive(archive, config_dir=None, current_state_path=lambda: cfg.state_path, force=True)
    assert caught.value.message.startswith("gateway is running (pid ")
    assert caught.value.message.endswith("); stop it before restoring")


def _config_dir(tmp_path: Path, config_yaml: str, **files: str) -> Path:
    d = tmp_path / "etc"
    (d / "plugins").mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(config_yaml)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _open_db(config: Config) -> None:
    EventLog(config.state_path, "full", default_runner()).open_sync().close()


def test_env_files_are_the_ones_the_loader_read_whatever_their_name(tmp_path: Path) -> None:
    """An env file named like YAML is still an env file: left out below scope all, under env/ at all."""
    d = _config_dir(tmp_path, "state:\n  path: data/ductile.db\nplugin_roots: [plugins]\n"
                              "environment_vars:\n  include: [vars.yaml]\n", **{"vars.yaml": "A=1\n"})
    config = load_config(find_config(None, str(d)), environ={"HOME": str(tmp_path)})
    assert config.env_files == [d / "vars.yaml"]
    assert _names(config, BackupScope.CONFIG) == {"config/config.yaml"}
    every = plan_backup(config, BackupScope.ALL, None, frozenset())
    assert [(p.archive_path, p.source_path) for p in every.env_files] == [("env/etc/vars.yaml", str(d / "vars.yaml"))]


def test_a_config_that_parses_but_does_not_validate_still_backs_up_with_its_problems_as_warnings(
        tmp_path: Path) -> None:
    d = _config_dir(tmp_path, "state:\n  path: data/ductile.db\nplugin_roots: [plugins]\nservice:\n  max_workers: 0\n")
    with pytest.raises(ConfigError) as refused:
        load_config(find_config(None, str(d)), environ={"HOME": str(tmp_path)})
    loaded = load_for_backup(find_config(None, str(d)), environ={"HOME": str(tmp_path)})
    assert loaded.problems == [str(refused.value)]
    _open_db(loaded.config)
    result = create_backup(loaded.config, tmp_path / "b.tar.gz", BackupScope.CONFIG, problems=loaded.problems,
                           environ={"HOME": str(tmp_path)})
    assert result.manifest.warnings[0] == str(refused.value)
    assert "config/config.yaml" in result.manifest.files


def test_a_config_that_does_not_parse_is_refused_by_the_backup(tmp_path: Path) -> None:
    d = _config_dir(tmp_path, "state: [unclosed\n")
    with pytest.raises(ConfigError):
        load_for_backup(find_config(None, str(d)), environ={"HOME": str(tmp_path)})


def test_a_vault_outside_the_config_dir_is_archived_and_restored_to_its_path(tmp_path: Path) -> None:
    vault = tmp_path / "vaults" / "vault.age"
    vault.parent.mkdir()
    vault.write_bytes(b"age-encryption.org/v1 not adopted yet\n")
    vault.chmod(0o600)
    d = _config_dir(tmp_path, f"state:\n  path: data/ductile.db\nplugin_roots: [plugins]\nsecrets:\n  vault_file: {vault}\n")
    config = load_config(find_config(None, str(d)), environ={"HOME": str(tmp_path)})
    _open_db(config)
    archive = tmp_path / "b.tar.gz"
    manifest = create_backup(config, archive, BackupScope.CONFIG, environ={"HOME": str(tmp_path)}).manifest
    assert manifest.vault is not None and manifest.vault.archive_path == "config-external/vault-vault.age"
    assert [(p.archive_path, p.source_path) for p in manifest.config_external] == [
        ("config-external/vault-vault.age", str(vault))]
    assert ("config file outside the config dir: "
            f"{vault} (archived as config-external/vault-vault.age)") in manifest.warnings
    targets = dict(plan_targets(verify_archive(archive), tmp_path / "new", tmp_path / "new" / "ductile.db"))
    assert targets["config-external/vault-vault.age"] == vault
    blob = vault.read_bytes()
    vault.unlink()
    shutil.rmtree(d)
    result = restore_archive(archive, config_dir=None, current_state_path=lambda: config.state_path, force=False,
                             environ={"HOME": str(tmp_path)})
    assert vault.read_bytes() == blob and (vault.stat().st_mode & 0o777) == 0o600
    assert str(vault) in {r.target for r in result.restored}


def test_a_missing_env_file_is_a_warning_of_the_backup_not_a_refusal(tmp_path: Path) -> None:
    d = _config_dir(tmp_path, "state:\n  path: data/ductile.db\nplugin_roots: [plugins]\n"
                              "environment_vars:\n  include: [gone.env]\n")
    loaded = load_for_backup(find_config(None, str(d)), environ={"HOME": str(tmp_path)})
    assert loaded.problems == [f"config.yaml:5: environment_vars.include[0]: file not found: {d / 'gone.env'}"]
    _open_db(loaded.config)
    manifest = create_backup(loaded.config, tmp_path / "b.tar.gz", BackupScope.ALL, problems=loaded.problems,
                             environ={"HOME": str(tmp_path)}).manifest
    assert f"env file not found: {d / 'gone.env'}" in manifest.warnings
    assert manifest.env_files == [] and "config/config.yaml" in manifest.files
