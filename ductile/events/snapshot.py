"""A consistent copy of the state DB while its writer keeps going (operations.md §7).

``VACUUM INTO`` on a read-only connection reads one snapshot of a WAL database and writes it as a
compact, self-contained file (no ``-wal`` needed), without blocking the gateway's single writer.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_TIMEOUT_MS = 5000
SNAPSHOT_LIMIT_SECONDS = 300.0


def open_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def vacuum_into(db: Path, target: Path, limit_seconds: float = SNAPSHOT_LIMIT_SECONDS) -> None:
    """Write a snapshot of ``db`` to ``target`` (which must not exist); sqlite3.Error on failure,
    including ``interrupted`` when it takes longer than ``limit_seconds``."""
    conn = open_readonly(db)
    try:
        deadline = time.monotonic() + limit_seconds
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10000)
        conn.execute("VACUUM INTO ?", (str(target),))
    finally:
        conn.close()


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """``PRAGMA integrity_check``'s lines other than the single ``ok`` of a sound file."""
    lines = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    return [] if lines == ["ok"] else lines
