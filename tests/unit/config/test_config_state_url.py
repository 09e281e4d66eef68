"""``state.path`` or ``state.url`` (issue 17): which event store a config opens, and that a store
URL's password is never shown (config show, the logged config snapshot, reprs, errors)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.app.backup import BackupError, create_backup
from ductile.app.backup_manifest import BackupScope
from ductile.config import Config, ConfigError
from ductile.config.redaction import snapshot_document
from ductile.config.resolved import resolved_document
from ductile.events.sqlite_store import SqliteStore
from ductile.events.store import StoreKind, mask_password

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

ROOTS = "plugin_roots: [plugins]\n"
URL = "postgresql://ductile:s3cr3t@db.internal:5432/ductile"


def test_state_path_opens_the_sqlite_file(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOTS + "state:\n  path: data/state.db\n")
    store = load().store()
    assert isinstance(store, SqliteStore)
    assert store.path == config_dir / "data" / "state.db"


def test_state_url_opens_postgres_without_showing_the_password(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + f"state:\n  url: {URL}\n")
    cfg = load()
    store = cfg.store()
    assert store.kind is StoreKind.POSTGRES
    assert store.file is None
    assert store.location == "postgresql://ductile:***@db.internal:5432/ductile"
    for shown in (repr(store), repr(cfg), str(resolved_document(cfg)), str(snapshot_document(cfg))):
        assert "s3cr3t" not in shown


def test_state_url_takes_an_environment_variable_and_keeps_it_out_of_the_snapshot(write: Write, load: Load,
                                                                                  tmp_path: Path) -> None:
    write("config.yaml", ROOTS + "state:\n  url: ${DATABASE_URL}\n")
    cfg = load({"HOME": str(tmp_path), "DATABASE_URL": URL})
    assert cfg.state_url == URL
    assert snapshot_document(cfg)["state"]["url"] == "${DATABASE_URL}"
    assert "s3cr3t" not in str(resolved_document(cfg))


def test_an_unset_variable_in_state_url_is_an_error(write: Write, load: Load, tmp_path: Path) -> None:
    write("config.yaml", ROOTS + "state:\n  url: ${DATABASE_URL}\n")
    with pytest.raises(ConfigError, match=r"state.url: environment variable \$\{DATABASE_URL\} is not set"):
        load({"HOME": str(tmp_path)})


def test_state_path_and_url_together_are_refused(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + f"state:\n  path: data/state.db\n  url: {URL}\n")
    with pytest.raises(ConfigError, match=r"either path \(SQLite\) or url \(PostgreSQL\), not both"):
        load()


def test_a_url_that_is_not_postgresql_is_refused_with_its_password_masked(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "state:\n  url: mysql://root:hunter2@db/ductile\n")
    with pytest.raises(ConfigError) as refused:
        load()
    assert "is not a postgresql:// URL" in str(refused.value)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p@ss:w@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("postgresql://h/db?sslmode=require&password=pw", "postgresql://h/db?sslmode=require&password=***"),
    ("postgresql://u:${PGPASSWORD}@h/db", "postgresql://u:${PGPASSWORD}@h/db"),
])
def test_mask_password_hides_only_the_password(url: str, shown: str) -> None:
    assert mask_password(url) == shown


def test_system_backup_refuses_a_postgres_store_and_names_pg_dump(write: Write, load: Load, tmp_path: Path) -> None:
    write("config.yaml", ROOTS + f"state:\n  url: {URL}\n")
    with pytest.raises(BackupError, match=r"system backup: not supported with state\.url yet; use pg_dump"):
        create_backup(load(), tmp_path / "out.tar.gz", BackupScope.DB)
