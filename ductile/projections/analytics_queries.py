"""Read-only aggregate queries over the job read models: queue depth, 24 h summary, stopwatch,
and job trees (api.md §4.5, §4.6, §4.3).

Functions of a read connection and an explicit ``now`` (Unix ns), so a test can pin time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, UnsetType

from ductile.events.read_pool import fetch_value
from ductile.events.timefmt import NS, parse_rfc3339, rfc3339, sql_ts
from ductile.events.types import StopwatchSub
from ductile.projections.job_queries import decode_result
from ductile.vocabulary import OUTSTANDING_SQL, TERMINAL, JobStatus, in_order

if TYPE_CHECKING:
    import aiosqlite

TERMINAL_STATUSES = in_order(TERMINAL)  # a fixed order: the summary's JSON keys
DAY_NS = 86_400 * NS
WINDOWS: dict[str, int] = {"5m": 300 * NS, "1h": 3_600 * NS, "24h": DAY_NS}
TREND_SLICES = 6
MS = 1_000_000
_subs_decoder = msgspec.json.Decoder(list[StopwatchSub])


# --- percentiles -------------------------------------------------------------------------------


class QueueDepth(msgspec.Struct):
    """The outstanding jobs, partitioned (api.md §4.5)."""

    queued: int
    retry_wait: int
    running: int


class Workers(msgspec.Struct):
    busy: int
    total: int


class QueueReport(msgspec.Struct, kw_only=True):
    """``GET /analytics/queue`` (api.md §4.5)."""

    captured_at: str
    depth: QueueDepth
    depth_total: int
    queued_by_plugin: dict[str, int]
    running_by_plugin: dict[str, int]
    oldest_queued_age_seconds: float | None
    workers: Workers


class TerminalCounts(msgspec.Struct):
    """Every terminal status, always present."""

    succeeded: int
    failed: int
    timed_out: int
    dead: int
    skipped: int


class Summary(msgspec.Struct):
    """``GET /analytics/summary``: terminal jobs completed in the last 24 h."""

    window: str
    captured_at: str
    stats: TerminalCounts


class SubTiming(msgspec.Struct, kw_only=True):
    """A plugin-reported sub-span, aggregated by name."""

    name: str
    sample_count: int
    p50_ms: int
    p95_ms: int
    p99_ms: int


class StepTiming(msgspec.Struct, kw_only=True):
    step: str
    sample_count: int
    p50_ms: int
    p95_ms: int
    p99_ms: int
    trend_p95_ms: list[int]
    subs: list[SubTiming] | UnsetType = UNSET


class Stopwatch(msgspec.Struct, kw_only=True):
    """``GET /stopwatch/{plugin}`` (api.md §4.6); ``subs_unavailable`` only for a caller who may
    not see sub-spans."""

    plugin: str
    window: str
    captured_at: str
    steps: list[StepTiming]
    subs_unavailable: str | UnsetType = UNSET


class TreeNode(msgspec.Struct, kw_only=True):
    """One job of ``GET /job/{id}/tree`` (api.md §4.3) and of a synchronous pipeline's answer."""

    job_id: str
    parent_job_id: str | UnsetType = UNSET
    plugin: str
    command: str
    status: JobStatus
    pipeline: str | UnsetType = UNSET
    step_id: str | UnsetType = UNSET
    attempt: int
    created_at: str
    started_at: str | UnsetType = UNSET
    completed_at: str | UnsetType = UNSET
    result: Any = UNSET
    last_error: str | UnsetType = UNSET


def nearest_rank(ordered: Sequence[int], percentile: float) -> int:
    """The nearest-rank percentile of an ascending sequence: the value at rank ``ceil(p/100 · n)``.

    An empty sequence gives 0 (a trend slice with no samples is reported as 0).
    """
    n = len(ordered)
    if n == 0:
        return 0
    rank = max(1, math.ceil(percentile / 100 * n))
    return ordered[min(rank, n) - 1]


def trend(samples: Sequence[tuple[int, int]], start_ns: int, window_ns: int, slices: int = TREND_SLICES) -> list[int]:
    """p95 of each of ``slices`` equal parts of ``[start, start + window]``, oldest first.

    ``samples`` are ``(ended_ns, duration_ms)``; a sample on a boundary belongs to the later slice,
    and one at the very end to the last slice.
    """
    buckets: list[list[int]] = [[] for _ in range(slices)]
    for ended, ms in samples:
        index = (ended - start_ns) * slices // window_ns if window_ns > 0 else slices - 1
        buckets[min(max(index, 0), slices - 1)].append(ms)
    return [nearest_rank(sorted(b), 95) for b in buckets]


# --- queue -------------------------------------------------------------------------------------


async def queue_partition(conn: aiosqlite.Connection, now_ns: int) -> dict[str, Any]:
    """Outstanding jobs split into eligible ``queued``, ``retry_wait`` and ``running``, per plugin."""
    depth = {"queued": 0, "retry_wait": 0, "running": 0}
    queued_by_plugin: dict[str, int] = {}
    running_by_plugin: dict[str, int] = {}
    rows = await conn.execute_fetchall(
        "SELECT plugin, status, next_retry_ns IS NOT NULL AND next_retry_ns > ? AS waiting, COUNT(*)"
        f" FROM job_queue WHERE status IN {OUTSTANDING_SQL} GROUP BY plugin, status, waiting",
        (now_ns,),
    )
    for plugin, status, waiting, count in rows:
        if status == JobStatus.RUNNING:
            depth["running"] += count
            running_by_plugin[plugin] = running_by_plugin.get(plugin, 0) + count
        elif waiting:
            depth["retry_wait"] += count
        else:
            depth["queued"] += count
            queued_by_plugin[plugin] = queued_by_plugin.get(plugin, 0) + count
    oldest = await fetch_value(
        conn,
        "SELECT MIN(created_ns) FROM job_queue WHERE status = 'queued'"
        " AND (next_retry_ns IS NULL OR next_retry_ns <= ?)",
        (now_ns,),
    )
    return {
        "depth": depth,
        "depth_total": sum(depth.values()),
        "queued_by_plugin": dict(sorted(queued_by_plugin.items())),
        "running_by_plugin": dict(sorted(running_by_plugin.items())),
        "oldest_queued_age_seconds": None if oldest is None else round(max(0, now_ns - oldest) / NS, 3),
    }


async def queue_analytics(conn: aiosqlite.Connection, now_ns: int, max_workers: int) -> dict[str, Any]:
    part = await queue_partition(conn, now_ns)
    return {
        "captured_at": _rfc(now_ns),
        **part,
        "workers": {"busy": part["depth"]["running"], "total": max_workers},
    }


# --- summary -----------------------------------------------------------------------------------


async def summary(conn: aiosqlite.Connection, now_ns: int) -> dict[str, Any]:
    """Terminal jobs completed in the last 24 h, by status (all five keys always present)."""
    stats = dict.fromkeys((s.value for s in TERMINAL_STATUSES), 0)
    for status, count in await conn.execute_fetchall(
        "SELECT status, COUNT(*) FROM job_log WHERE completed_ns >= ? AND completed_ns <= ? GROUP BY status",
        (now_ns - DAY_NS, now_ns),
    ):
        if status in stats:
            stats[status] = count
    return {"window": "24h", "captured_at": _rfc(now_ns), "stats": stats}


# --- stopwatch ---------------------------------------------------------------------------------

# Every attempt of the plugin that ended in the window. The job's identity comes from the queue
# row, or from the ledger once the queue row has been pruned (a short job_queue_retention). The
# subquery is named: PostgreSQL requires it, SQLite takes it.
_ATTEMPTS = """
SELECT created_ns, completed_at, command, pipeline, step_id, subs FROM (
  SELECT a.created_ns, a.completed_at, q.pipeline, q.step_id, a.subs,
    COALESCE(q.plugin, (SELECT plugin FROM job_log WHERE job_id = a.job_id LIMIT 1)) AS plugin,
    COALESCE(q.command, (SELECT command FROM job_log WHERE job_id = a.job_id LIMIT 1)) AS command
  FROM job_attempts a LEFT JOIN job_queue q ON q.job_id = a.job_id
  WHERE a.completed_at IS NOT NULL AND a.completed_at >= ? AND a.completed_at <= ?
) AS attempt WHERE plugin = ?
"""


def step_name(command: str, pipeline: str | None, step_id: str | None) -> str:
    return f"{pipeline}/{step_id}" if pipeline and step_id else command


class StepSamples:
    """One step's attempts: ``(ended_ns, wall_ms)`` each, and each reported sub-span's ms by name."""

    def __init__(self) -> None:
        self.attempts: list[tuple[int, int]] = []
        self.subs: dict[str, list[int]] = {}


async def stopwatch_samples(conn: aiosqlite.Connection, plugin: str, start_ns: int, end_ns: int) -> dict[str, StepSamples]:
    """Per step: wall time from each attempt's start to its end, and the plugin's own sub-spans."""
    out: dict[str, StepSamples] = {}
    for started, completed_at, command, pipeline, step_id, subs in await conn.execute_fetchall(
        _ATTEMPTS, (sql_ts(start_ns), sql_ts(end_ns), plugin)
    ):
        ended = parse_rfc3339(completed_at)
        step = out.setdefault(step_name(command, pipeline, step_id), StepSamples())
        step.attempts.append((ended, max(0, ended - started) // MS))
        for sub in _subs_decoder.decode(subs) if subs else ():
            step.subs.setdefault(sub.name, []).append(sub.dur_ns // MS)
    return out


def _percentiles(ordered: Sequence[int]) -> dict[str, int]:
    return {"p50_ms": nearest_rank(ordered, 50), "p95_ms": nearest_rank(ordered, 95), "p99_ms": nearest_rank(ordered, 99)}


async def stopwatch(
    conn: aiosqlite.Connection, plugin: str, window: str, now_ns: int, *, subs: bool | None
) -> dict[str, Any]:
    """``GET /stopwatch/{plugin}``. ``subs``: True to include per-step ``subs`` (the plugin's
    ``ductile_stopwatch_subs`` aggregated by name), False to leave them out, None when the caller
    may not see them."""
    window_ns = WINDOWS[window]
    start = now_ns - window_ns
    steps = []
    for name, samples in sorted((await stopwatch_samples(conn, plugin, start, now_ns)).items()):
        ordered = sorted(ms for _, ms in samples.attempts)
        step: dict[str, Any] = {
            "step": name,
            "sample_count": len(ordered),
            **_percentiles(ordered),
            "trend_p95_ms": trend(samples.attempts, start, window_ns),
        }
        if subs:
            step["subs"] = [{"name": sub, "sample_count": len(ms), **_percentiles(sorted(ms))}
                            for sub, ms in sorted(samples.subs.items())]
        steps.append(step)
    body: dict[str, Any] = {"plugin": plugin, "window": window, "captured_at": _rfc(now_ns), "steps": steps}
    if subs is None:
        body["subs_unavailable"] = "insufficient_scope"
    return body


# --- job trees ---------------------------------------------------------------------------------

_TREE = """
WITH RECURSIVE tree(job_id, depth) AS (
  SELECT job_id, 0 FROM job_queue WHERE job_id = ?
  UNION
  SELECT q.job_id, t.depth + 1 FROM job_queue q JOIN tree t ON q.parent_job_id = t.job_id
)
SELECT q.job_id, q.parent_job_id, q.plugin, q.command, q.status, q.pipeline, q.step_id, q.attempt,
       q.created_at, q.started_at, q.completed_at, q.result, q.last_error
FROM tree t JOIN job_queue q ON q.job_id = t.job_id
ORDER BY t.depth = 0 DESC, q.created_ns, q.enqueue_position
"""

# A root pruned from the queue is still in the ledger, with the children that were logged.
_LOG_TREE = """
WITH RECURSIVE tree(job_id, depth) AS (
  SELECT DISTINCT job_id, 0 FROM job_log WHERE job_id = ?
  UNION
  SELECT DISTINCT l.job_id, t.depth + 1 FROM job_log l JOIN tree t ON l.parent_job_id = t.job_id
)
SELECT l.job_id, l.parent_job_id, l.plugin, l.command, l.status, NULL, NULL, l.attempt,
       l.created_at, NULL, l.completed_at, l.result, l.last_error
FROM tree t JOIN job_log l ON l.job_id = t.job_id
  AND l.attempt = (SELECT MAX(attempt) FROM job_log WHERE job_id = t.job_id)
ORDER BY t.depth = 0 DESC, l.created_at, l.completed_ns
"""


async def job_tree(conn: aiosqlite.Connection, job_id: str, *, with_result: bool) -> list[dict[str, Any]] | None:
    """The job and all its descendants: the job first, then by ``created_at``. None if unknown."""
    rows = list(await conn.execute_fetchall(_TREE, (job_id,))) or list(await conn.execute_fetchall(_LOG_TREE, (job_id,)))
    if not rows:
        return None
    nodes = []
    for r in rows:
        node: dict[str, Any] = {
            "job_id": r[0], "parent_job_id": r[1], "plugin": r[2], "command": r[3], "status": r[4],
            "pipeline": r[5], "step_id": r[6], "attempt": r[7], "created_at": r[8], "started_at": r[9],
            "completed_at": r[10],
        }
        if with_result:
            node["result"] = decode_result(r[11])
            node["last_error"] = r[12]
        nodes.append({k: v for k, v in node.items() if v is not None})
    return nodes


def _rfc(ns: int) -> str:
    return rfc3339(ns) or ""
