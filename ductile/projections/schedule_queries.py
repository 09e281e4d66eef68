"""Read-only queries over schedule and breaker read models, shaped for the API and CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ductile.events.read_pool import fetch_one, fetch_value
from ductile.events.timefmt import rfc3339
from ductile.vocabulary import OUTSTANDING_SQL, CircuitState, ScheduleStatus

if TYPE_CHECKING:
    import aiosqlite

# The API's names for the stored statuses (api.md).
STATUS_NAMES = {ScheduleStatus.ACTIVE: "scheduled", ScheduleStatus.PAUSED_INVALID: "invalid",
                ScheduleStatus.EXHAUSTED: "exhausted"}


class ScheduleEntry(msgspec.Struct, kw_only=True):
    """One configured entry of ``GET /scheduler/jobs`` (scheduler.md §10). ``timezone`` is always
    sent (null when the entry names none); ``reason``/``detail`` only for an invalid entry, where
    they may be null."""

    plugin: str
    schedule_id: str
    command: str
    mode: str
    status: Literal["scheduled", "invalid", "exhausted"]
    timezone: str | None
    reason: str | UnsetType | None = UNSET
    detail: str | UnsetType | None = UNSET
    next_run_at: str | UnsetType = UNSET
    last_fired_at: str | UnsetType = UNSET
    last_success_at: str | UnsetType = UNSET
    last_success_job_id: str | UnsetType = UNSET
    outstanding: int
    breaker_state: CircuitState
    last_skip_reason: str | UnsetType = UNSET


class ScheduleList(msgspec.Struct):
    jobs: list[ScheduleEntry]


async def entry_rows(conn: aiosqlite.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    rows = await conn.execute_fetchall(
        "SELECT plugin, schedule_id, status, reason, detail, next_run_ns, last_fired_ns, last_success_ns,"
        " last_success_job_id, last_skip_reason FROM schedule_state"
    )
    outstanding = dict(
        ((p, s), n) for p, s, n in await conn.execute_fetchall(
            f"SELECT plugin, schedule_id, COUNT(*) FROM schedule_jobs WHERE status IN {OUTSTANDING_SQL}"
            " GROUP BY plugin, schedule_id"
        )
    )
    return {
        (r[0], r[1]): {
            "status": r[2], "reason": r[3], "detail": r[4], "next_run_at": r[5], "last_fired_at": r[6],
            "last_success_at": r[7], "last_success_job_id": r[8], "last_skip_reason": r[9],
            "outstanding": outstanding.get((r[0], r[1]), 0),
        }
        for r in rows
    }


async def breaker_states(conn: aiosqlite.Connection) -> dict[tuple[str, str], str]:
    return {(p, c): s for p, c, s in await conn.execute_fetchall("SELECT plugin, command, state FROM circuit_breakers")}


async def scheduler_jobs(conn: aiosqlite.Connection, specs: list[Any]) -> dict[str, Any]:
    """``GET /scheduler/jobs``: every configured entry of enabled plugins, with its stored plan."""
    stored = await entry_rows(conn)
    breakers = await breaker_states(conn)
    out = []
    for spec in specs:
        row = stored.get((spec.plugin, spec.id), {})
        status = STATUS_NAMES.get(row.get("status", ""), "invalid" if not spec.valid else "scheduled")
        entry: dict[str, Any] = {
            "plugin": spec.plugin, "schedule_id": spec.id, "command": spec.command, "mode": spec.kind,
            "status": status, "timezone": spec.timezone,
        }
        if status == "invalid":
            entry["reason"] = row.get("reason") or spec.invalid_reason
            entry["detail"] = row.get("detail") or spec.invalid_detail
        elif status == "scheduled" and row.get("next_run_at") is not None:
            entry["next_run_at"] = rfc3339(row["next_run_at"])
        for key in ("last_fired_at", "last_success_at"):
            if row.get(key) is not None:
                entry[key] = rfc3339(row[key])
        if row.get("last_success_job_id"):
            entry["last_success_job_id"] = row["last_success_job_id"]
        entry["outstanding"] = row.get("outstanding", 0)
        entry["breaker_state"] = breakers.get((spec.plugin, spec.command), CircuitState.CLOSED)
        if row.get("last_skip_reason"):
            entry["last_skip_reason"] = row["last_skip_reason"]
        out.append(entry)
    return {"jobs": out}


async def active_polls(conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    """Outstanding scheduler jobs (``ductile system scheduler``)."""
    rows = await conn.execute_fetchall(
        "SELECT job_id, plugin, command, schedule_id, dedupe_key, status, attempt, created_at, started_at"
        f" FROM job_queue WHERE schedule_id IS NOT NULL AND status IN {OUTSTANDING_SQL} ORDER BY created_ns"
    )
    return [
        {k: v for k, v in zip(("job_id", "plugin", "command", "schedule_id", "dedupe_key", "status", "attempt",
                                "created_at", "started_at"), r, strict=True) if v is not None}
        for r in rows
    ]


async def breaker(conn: aiosqlite.Connection, plugin: str, command: str, limit: int) -> dict[str, Any]:
    """``ductile system breaker``: state plus transitions, newest first."""
    out: dict[str, Any] = {"plugin": plugin, "command": command, "failure_count": 0}
    row = await fetch_one(
        conn,
        "SELECT state, failure_count, opened_at, last_failure_at, last_job_id, updated_at FROM circuit_breakers"
        " WHERE plugin=? AND command=?",
        (plugin, command),
    )
    if row is not None:
        for key, value in zip(("state", "failure_count", "opened_at", "last_failure_at", "last_job_id", "updated_at"),
                              row, strict=True):
            if value is not None:
                out[key] = value
    out["transitions"] = [
        {k: v for k, v in zip(("id", "from_state", "to_state", "failure_count", "reason", "job_id", "created_at"),
                              r, strict=True) if v is not None or k == "from_state"}
        for r in await conn.execute_fetchall(
            "SELECT id, from_state, to_state, failure_count, reason, job_id, created_at FROM circuit_breaker_transitions"
            " WHERE plugin=? AND command=? ORDER BY id DESC LIMIT ?",
            (plugin, command, limit),
        )
    ]
    return out


async def open_breaker_plugins(conn: aiosqlite.Connection) -> int:
    count: int = await fetch_value(conn, "SELECT COUNT(DISTINCT plugin) FROM circuit_breakers WHERE state='open'")
    return count
