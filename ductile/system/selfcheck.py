"""The online self-check (operations.md §5): the log's chain, projection checkpoints and the
freshness of terminal queue rows, all on one read snapshot of the state DB."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ductile.config.model import Config
from ductile.events.log import read_head, verify_chain
from ductile.events.timefmt import NS
from ductile.projections.registry import ALL as PROJECTIONS
from ductile.vocabulary import TERMINAL_SQL


class SelfcheckCheck(msgspec.Struct, kw_only=True):
    """One check as ``/system/selfcheck`` answers it; ``_status`` builds its keys."""

    name: str
    ok: bool
    status: Literal["ok", "fail", "skipped"]
    detail: str | UnsetType = UNSET


def _status(name: str, ok: bool | None, detail: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "ok": bool(ok), "status": "skipped" if ok is None else ("ok" if ok else "fail")}
    if detail:
        out["detail"] = detail
    return out


def _chain_check(conn: sqlite3.Connection) -> dict[str, Any]:
    report = verify_chain(conn)
    if not report.ok:
        return _status("event_log_chain", False, f"{report.problem} (first bad position {report.position})")
    bad = conn.execute(
        "SELECT stream, MIN(version), MAX(version), COUNT(*) FROM events GROUP BY stream"
        " HAVING MIN(version) != 1 OR MAX(version) != COUNT(*) LIMIT 1"
    ).fetchone()
    if bad is not None:
        return _status("event_log_chain", False,
                       f"stream {bad[0]!r} versions are not contiguous ({bad[3]} events, {bad[1]}..{bad[2]})")
    return _status("event_log_chain", True, f"{report.events} events, head {report.head}")


def _checkpoint_check(conn: sqlite3.Connection, head: int, names: Iterable[str]) -> dict[str, Any]:
    stored = dict(conn.execute("SELECT name, position FROM projections").fetchall())
    behind = [f"{n} at {stored.get(n, 'missing')}" for n in names if stored.get(n) != head]
    if behind:
        return _status("projection_checkpoints", False, f"head {head}; behind: " + ", ".join(behind))
    return _status("projection_checkpoints", True, f"all at head {head}")


def _freshness_check(conn: sqlite3.Connection, config: Config) -> dict[str, Any]:
    newest = conn.execute("SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1").fetchone()
    if newest is None:
        return _status("queue_terminal_freshness", True, "empty event log")
    if config.service.job_queue_retention <= 0:
        return _status("queue_terminal_freshness", True, "job_queue_retention disabled")
    limit = int((config.service.job_queue_retention + 2 * config.service.tick_interval) * NS)
    count, oldest = conn.execute(
        "SELECT COUNT(*), MIN(completed_at) FROM job_queue"
        f" WHERE status IN {TERMINAL_SQL} AND completed_ns < ?",
        (newest[0] - limit,),
    ).fetchone()
    if count:
        return _status("queue_terminal_freshness", False, f"{count} stale terminal queue row(s), oldest {oldest}")
    return _status("queue_terminal_freshness", True)


def _unreadable(detail: str) -> list[dict[str, Any]]:
    skipped = ("event_log_chain", "projection_checkpoints", "queue_terminal_freshness")
    return [_status("state_db", False, detail), *(_status(n, None, "state DB not readable") for n in skipped)]


def selfcheck_checks(open_reader: Callable[[], sqlite3.Connection], config: Config) -> list[dict[str, Any]]:
    """The online checks, all on one read snapshot of the state DB."""
    try:
        conn = open_reader()
    except sqlite3.Error as exc:
        return _unreadable(f"cannot open the state DB read-only: {exc}")
    try:
        conn.execute("BEGIN")
        head = read_head(conn)
        checks = [_status("state_db", True, f"readable, event log head {head}")]
        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("event_log_chain", lambda: _chain_check(conn)),
            ("projection_checkpoints", lambda: _checkpoint_check(conn, head, [p.name for p in PROJECTIONS])),
            ("queue_terminal_freshness", lambda: _freshness_check(conn, config)),
        ]
        for name, run in runs:
            try:
                checks.append(run())
            except sqlite3.Error as exc:
                checks.append(_status(name, False, f"read failed: {exc}"))
        return checks
    except sqlite3.Error as exc:
        return _unreadable(f"state DB not readable: {exc}")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
