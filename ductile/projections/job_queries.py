"""Read-only queries over the job read models, shaped as the API and CLI show them.

Shared by the HTTP API and the CLI (which opens the state DB read-only, even while the gateway
runs). Timestamps come out RFC3339 with ``Z``; ``result`` is the decoded plugin response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, UnsetType

from ductile import json_limits
from ductile.events.read_pool import fetch_one, fetch_value
from ductile.events.timefmt import parse_rfc3339, sql_ts
from ductile.vocabulary import OUTSTANDING_SQL, JobStatus

if TYPE_CHECKING:
    import aiosqlite

STATUSES = tuple(JobStatus)
STATUS_ALIASES = {"pending": JobStatus.QUEUED, "ok": JobStatus.SUCCEEDED, "error": JobStatus.FAILED}


class QueryError(ValueError):
    """A bad filter; ``str`` is the user-facing message."""


def normalise_status(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    v = STATUS_ALIASES.get(value.lower(), value.lower())
    if v not in STATUSES:
        raise QueryError("invalid status filter")
    return v


def decode_result(raw: str | None) -> Any:
    """Stored JSON text as a value, or the text itself when it is not JSON or nests too deeply.

    A plugin's stdout is stored as it came, and a response nested past ``json_limits.MAX_DEPTH``
    would crash the decoder (or the encoder of the answer) on every read of the job.
    """
    if raw is None:
        return None
    try:
        return json_limits.decode(raw)
    except (msgspec.DecodeError, json_limits.TooDeep):
        return raw


# The answers' record types (api.md §4.3, §4.4), written once here beside the queries that fill
# them. A key that api.md marks optional is UNSET when absent, so it is left out of the answer
# rather than sent as null; field order is the answer's key order. ``result`` is the plugin's own
# JSON, so it stays ``Any``.


class Job(msgspec.Struct, kw_only=True):
    """``GET /job/{id}``. A job pruned from the queue (read from ``job_log``) has no
    ``max_attempts``, ``pipeline``, ``step_id``, ``started_at`` or ``next_retry_at``."""

    job_id: str
    status: JobStatus
    plugin: str
    command: str
    submitted_by: str
    attempt: int
    max_attempts: int | UnsetType = UNSET
    parent_job_id: str | UnsetType = UNSET
    pipeline: str | UnsetType = UNSET
    step_id: str | UnsetType = UNSET
    created_at: str
    started_at: str | UnsetType = UNSET
    completed_at: str | UnsetType = UNSET
    next_retry_at: str | UnsetType = UNSET
    result: Any = UNSET
    last_error: str | UnsetType = UNSET


class JobSummary(msgspec.Struct, kw_only=True):
    """One entry of ``GET /jobs``."""

    job_id: str
    plugin: str
    command: str
    status: JobStatus
    submitted_by: str
    attempt: int
    created_at: str
    started_at: str | UnsetType = UNSET
    completed_at: str | UnsetType = UNSET


class JobPage(msgspec.Struct):
    """``GET /jobs``: newest first; ``total`` counts every match, not just this page."""

    jobs: list[JobSummary]
    total: int


class JobLogEntry(msgspec.Struct, kw_only=True):
    """One terminal attempt of ``GET /job-logs``; ``log_id`` is ``<job_id>-<attempt>``."""

    job_id: str
    log_id: str
    plugin: str
    command: str
    status: JobStatus
    attempt: int
    submitted_by: str
    created_at: str
    completed_at: str
    last_error: str | UnsetType = UNSET
    stderr: str | UnsetType = UNSET
    result: Any = UNSET


class JobLogPage(msgspec.Struct):
    """``GET /job-logs``: newest ``completed_at`` first."""

    logs: list[JobLogEntry]
    total: int


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


JOB_FIELDS = (
    "job_id, status, plugin, command, submitted_by, attempt, max_attempts, parent_job_id, pipeline, step_id,"
    " created_at, started_at, completed_at, next_retry_at, result, last_error, payload, dedupe_key, schedule_id,"
    " source_event_id, event_context_id, enqueued_config_snapshot_id, started_config_snapshot_id"
)


async def get_job(conn: aiosqlite.Connection, job_id: str, *, with_result: bool = True, full: bool = False) -> dict[str, Any] | None:
    row = await fetch_one(conn, f"SELECT {JOB_FIELDS} FROM job_queue WHERE job_id=?", (job_id,))
    if row is None:
        return await _job_from_log(conn, job_id, with_result=with_result)
    job = {
        "job_id": row[0], "status": row[1], "plugin": row[2], "command": row[3], "submitted_by": row[4],
        "attempt": row[5], "max_attempts": row[6], "parent_job_id": row[7], "pipeline": row[8], "step_id": row[9],
        # Stored fixed-width timestamps are already RFC3339 (6 fractional digits, Z).
        "created_at": row[10], "started_at": row[11], "completed_at": row[12], "next_retry_at": row[13],
    }
    if with_result:
        job["result"] = decode_result(row[14])
        job["last_error"] = row[15]
    if full:
        job["payload"] = decode_result(row[16])
        job["dedupe_key"] = row[17]
        job["schedule_id"] = row[18]
        job["source_event_id"] = row[19]
        job["event_context_id"] = row[20]
        job["enqueued_config_snapshot_id"] = row[21]
        job["started_config_snapshot_id"] = row[22]
    return _compact(job)


async def _job_from_log(conn: aiosqlite.Connection, job_id: str, *, with_result: bool) -> dict[str, Any] | None:
    """A job pruned from the queue still has its ``job_log`` row."""
    row = await fetch_one(
        conn,
        "SELECT job_id, status, plugin, command, submitted_by, attempt, parent_job_id, created_at, completed_at,"
        " result, last_error FROM job_log WHERE job_id=? ORDER BY completed_ns DESC LIMIT 1",
        (job_id,),
    )
    if row is None:
        return None
    job = {
        "job_id": row[0], "status": row[1], "plugin": row[2], "command": row[3], "submitted_by": row[4],
        "attempt": row[5], "parent_job_id": row[6], "created_at": row[7], "completed_at": row[8],
    }
    if with_result:
        job["result"] = decode_result(row[9])
        job["last_error"] = row[10]
    return _compact(job)


def _filters(
    plugin: str | None, command: str | None, status: str | None, submitted_by: str | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for col, val in (("plugin", plugin), ("command", command), ("status", normalise_status(status)),
                     ("submitted_by", submitted_by)):
        if val:
            where.append(f"{col} = ?")
            params.append(val)
    return where, params


DEFAULT_LIMIT = 50  # api.md §4.4: the page size of /jobs and /job-logs, and its bound
MAX_LIMIT = 200


def check_limit(limit: int | None, default: int = DEFAULT_LIMIT) -> int:
    if limit is None:
        return default
    if limit <= 0:
        raise QueryError("limit must be a positive integer")
    if limit > MAX_LIMIT:
        raise QueryError(f"limit must be <= {MAX_LIMIT}")
    return limit


async def list_jobs(
    conn: aiosqlite.Connection, *, plugin: str | None = None, command: str | None = None, status: str | None = None,
    submitted_by: str | None = None, limit: int | None = None,
) -> dict[str, Any]:
    n = check_limit(limit)
    where, params = _filters(plugin, command, status, submitted_by)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = await fetch_value(conn, f"SELECT COUNT(*) FROM job_queue{clause}", params)
    rows = await conn.execute_fetchall(
        "SELECT job_id, plugin, command, status, submitted_by, attempt, created_at, started_at, completed_at"
        f" FROM job_queue{clause} ORDER BY created_ns DESC, enqueue_position DESC LIMIT ?",
        [*params, n],
    )
    jobs = [
        _compact({"job_id": r[0], "plugin": r[1], "command": r[2], "status": r[3], "submitted_by": r[4],
                  "attempt": r[5], "created_at": r[6], "started_at": r[7], "completed_at": r[8]})
        for r in rows
    ]
    return {"jobs": jobs, "total": total}


def _bound(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        return sql_ts(parse_rfc3339(value))
    except ValueError:
        raise QueryError(f"invalid {name} timestamp") from None


async def job_logs(
    conn: aiosqlite.Connection, *, job_id: str | None = None, plugin: str | None = None, command: str | None = None,
    status: str | None = None, submitted_by: str | None = None, from_: str | None = None, to: str | None = None,
    query: str | None = None, limit: int | None = None, include_result: bool = False, with_result: bool = True,
) -> dict[str, Any]:
    n = check_limit(limit)
    where, params = _filters(plugin, command, status, submitted_by)
    if job_id:
        where.append("job_id = ?")
        params.append(job_id)
    lo, hi = _bound(from_, "from"), _bound(to, "to")
    if lo:
        where.append("completed_at >= ?")
        params.append(lo)
    if hi:
        where.append("completed_at <= ?")
        params.append(hi)
    if query:
        where.append("(instr(lower(coalesce(last_error,'')), ?) > 0 OR instr(lower(coalesce(stderr,'')), ?) > 0"
                     " OR instr(lower(coalesce(result,'')), ?) > 0)")
        q = query.lower()
        params += [q, q, q]
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = await fetch_value(conn, f"SELECT COUNT(*) FROM job_log{clause}", params)
    rows = await conn.execute_fetchall(
        "SELECT job_id, id, plugin, command, status, attempt, submitted_by, created_at, completed_at, last_error,"
        f" stderr, result FROM job_log{clause} ORDER BY completed_ns DESC LIMIT ?",
        [*params, n],
    )
    logs = []
    for r in rows:
        entry: dict[str, Any] = {
            "job_id": r[0], "log_id": r[1], "plugin": r[2], "command": r[3], "status": r[4], "attempt": r[5],
            "submitted_by": r[6], "created_at": r[7], "completed_at": r[8],
        }
        if with_result:
            entry["last_error"] = r[9]
            entry["stderr"] = r[10] or None
            if include_result:
                entry["result"] = decode_result(r[11])
        logs.append(_compact(entry))
    return {"logs": logs, "total": total}


async def transitions(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    return [
        {"from_status": r[0], "to_status": r[1], "reason": r[2], "created_at": r[3]}
        for r in await conn.execute_fetchall(
            "SELECT from_status, to_status, reason, created_at FROM job_transitions WHERE job_id=? ORDER BY id",
            (job_id,),
        )
    ]


async def attempts(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    return [
        _compact({"attempt": r[0], "started_at": r[1], "completed_at": r[2], "outcome": r[3], "exit_code": r[4],
                  "duration_ms": r[5], "error": r[6], "stderr": r[7] or None})
        for r in await conn.execute_fetchall(
            "SELECT attempt, created_at, completed_at, outcome, exit_code, duration_ms, error, stderr"
            " FROM job_attempts WHERE job_id=? ORDER BY attempt",
            (job_id,),
        )
    ]


async def lineage(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    chain: list[dict[str, Any]] = []
    current: str | None = job_id
    seen: set[str] = set()
    while current and current not in seen:
        seen.add(current)
        row = await fetch_one(
            conn,
            "SELECT job_id, plugin, command, status, pipeline, step_id, parent_job_id FROM job_queue WHERE job_id=?",
            (current,),
        )
        if row is None:
            break
        chain.append(_compact({"job_id": row[0], "plugin": row[1], "command": row[2], "status": row[3],
                               "pipeline": row[4], "step_id": row[5]}))
        current = row[6]
    chain.reverse()
    return chain


async def children(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    return [
        _compact({"job_id": r[0], "plugin": r[1], "command": r[2], "status": r[3], "step_id": r[4]})
        for r in await conn.execute_fetchall(
            "SELECT job_id, plugin, command, status, step_id FROM job_queue WHERE parent_job_id=? ORDER BY created_ns",
            (job_id,),
        )
    ]


async def stderr_of(conn: aiosqlite.Connection, job_id: str) -> str | None:
    stderr = await fetch_value(
        conn, "SELECT stderr FROM job_attempts WHERE job_id=? ORDER BY attempt DESC LIMIT 1", (job_id,)
    )
    return stderr or None


async def queue_depth(conn: aiosqlite.Connection) -> int:
    depth: int = await fetch_value(conn, f"SELECT COUNT(*) FROM job_queue WHERE status IN {OUTSTANDING_SQL}")
    return depth


async def context_chain(conn: aiosqlite.Connection, context_id: str | None) -> dict[str, Any]:
    """``job inspect`` context: the chain of records, root first, and the merged baggage."""
    if context_id is None:
        return {}
    chain: list[dict[str, Any]] = []
    current: str | None = context_id
    seen: set[str] = set()
    baggage: dict[str, Any] = {}
    while current and current not in seen:
        seen.add(current)
        row = await fetch_one(
            conn,
            "SELECT id, parent_id, pipeline_name, step_id, claims, context, created_at FROM event_contexts WHERE id=?",
            (current,),
        )
        if row is None:
            break
        if not chain:
            context = decode_result(row[5])
            baggage = {k: v for k, v in context.items() if k != "ductile"} if isinstance(context, dict) else {}
        chain.append({"id": row[0], "pipeline_name": row[2], "step_id": row[3], "claims": decode_result(row[4]),
                      "created_at": row[6]})
        current = row[1]
    chain.reverse()
    return {"event_context_id": context_id, "chain": chain, "baggage": baggage}


def _event_type(payload: str | None) -> str | None:
    event = decode_result(payload)
    return event.get("type") if isinstance(event, dict) else None


async def dispatches(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    """What routing did with a job's events: children enqueued, then dispatches dropped (deduped,
    refused by depth) from the ledger."""
    out = [
        _compact({"event_type": _event_type(r[3]), "pipeline": r[1],
                  "step_id": r[2], "outcome": "failed" if r[4] == JobStatus.FAILED and r[5] is None else "enqueued",
                  "job_id": r[0]})
        for r in await conn.execute_fetchall(
            "SELECT job_id, pipeline, step_id, payload, status, started_at FROM job_queue WHERE parent_job_id=?"
            " AND submitted_by IN ('route','hook') ORDER BY created_ns",
            (job_id,),
        )
    ]
    out += [
        _compact({"event_type": r[0], "pipeline": r[1], "step_id": r[2], "outcome": r[3], "job_id": r[4]})
        for r in await conn.execute_fetchall(
            "SELECT event_type, pipeline, step_id, outcome, existing_job_id FROM job_dispatch_drops WHERE job_id=?"
            " ORDER BY id",
            (job_id,),
        )
    ]
    return out
