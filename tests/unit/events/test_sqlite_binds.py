"""The process-wide sqlite3 adapters (ductile/events/sqlite_binds.py) store exactly what sqlite3
stored without them: a NULL for ``None``, the same blob for ``bytes``, a status's own text for a vocabulary ``StrEnum``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ductile.events import sqlite_binds
from ductile.events.sqlite_store import connect
from ductile.vocabulary import AttemptOutcome, JobStatus


def test_none_and_statuses_are_stored_as_null_and_their_text(tmp_path: Path) -> None:
    conn = connect(tmp_path / "binds.db")
    try:
        conn.execute("CREATE TABLE t(a, b, c, d)")
        conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (None, JobStatus.SUCCEEDED, AttemptOutcome.OK, b"\x00id"))
        row = conn.execute("SELECT typeof(a), b, typeof(b), c, d, typeof(d) FROM t").fetchone()
        assert row == ("null", "succeeded", "text", "ok", b"\x00id", "blob")
        assert type(row[1]) is str
        # Read back where a status is compared as text, as every projection query does.
        assert conn.execute("SELECT COUNT(*) FROM t WHERE b = ?", (JobStatus.SUCCEEDED,)).fetchone() == (1,)
    finally:
        conn.close()


def test_an_adapter_registered_elsewhere_is_kept() -> None:
    key = (JobStatus, sqlite3.PrepareProtocol)
    ours = sqlite3.adapters[key]
    try:
        sqlite3.register_adapter(JobStatus, lambda s: f"<{s}>")
        sqlite_binds.register()
        conn = sqlite3.connect(":memory:")
        try:
            assert conn.execute("SELECT ?", (JobStatus.QUEUED,)).fetchone() == ("<queued>",)
        finally:
            conn.close()
    finally:
        sqlite3.adapters[key] = ours
