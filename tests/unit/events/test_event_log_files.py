"""The state DB on disk: private file modes, and no silent fresh start over an emptied DB."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ductile.events.log import EventLog
from ductile.events.schema import UnknownSchema
from ductile.events.sqlite_store import EmptyStateDatabase


def test_a_new_state_db_and_its_wal_and_shm_are_0600_in_an_open_directory(tmp_path: Path) -> None:
    state_dir = tmp_path / "data"
    state_dir.mkdir(mode=0o755)
    old_umask = os.umask(0o022)
    try:
        log = EventLog(state_dir / "ductile.db").open_sync()
        try:
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()}
        finally:
            log.close()
    finally:
        os.umask(old_umask)
    assert modes == {"ductile.db": 0o600, "ductile.db-wal": 0o600, "ductile.db-shm": 0o600}


def test_a_zero_length_state_db_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ductile.db"
    path.write_bytes(b"")
    with pytest.raises(EmptyStateDatabase) as info:
        EventLog(path).open_sync()
    assert str(info.value).startswith(f"state database {path} is empty (0 bytes)")
    assert isinstance(info.value, UnknownSchema)  # boot reports it the way it reports a foreign DB
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ductile.db"]


def test_a_missing_state_db_is_created_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "new" / "ductile.db"
    EventLog(path).open_sync().close()
    assert path.stat().st_size > 0
    EventLog(path).open_sync().close()


def test_closing_checkpoints_the_wal_into_the_file_even_with_a_reader_still_open(tmp_path: Path) -> None:
    """operations.md §2: after a stop a copy of the DB file alone (no -wal) holds every event,
    even when another connection (here an idle reader) keeps SQLite from checkpointing on close."""
    import shutil
    import sqlite3

    from ductile.events.types import GatewayStopped

    path = tmp_path / "ductile.db"
    log = EventLog(path).open_sync()
    reader = sqlite3.connect(path)
    reader.execute("SELECT COUNT(*) FROM events").fetchone()  # it has the log open, outside a transaction
    try:
        for n in range(3):
            log.append_sync("system", [GatewayStopped(pid=n, at=n)])
        log.close()
        assert (tmp_path / "ductile.db-wal").stat().st_size == 0
        copy = tmp_path / "copy" / "ductile.db"
        copy.parent.mkdir()
        shutil.copyfile(path, copy)
        with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
            assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (3,)
    finally:
        reader.close()
