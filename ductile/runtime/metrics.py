"""Process metrics for ``GET /metrics`` (api.md §6), in Prometheus text format 0.0.4.

Counters live in this process and start at zero with it; gauges are read from the state DB at
scrape time. ``observe`` is an ``EventLog.on_commit`` listener (it runs on the event loop);
``render`` runs on a reader thread, so the shared counters sit behind one lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ductile.events.read_pool import fetch_value
from ductile.events.record import Recorded
from ductile.events.timefmt import now_ns
from ductile.events.types import (
    JobDead,
    JobEnqueued,
    JobFailed,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobSucceeded,
)
from ductile.projections.analytics_queries import queue_partition
from ductile.vocabulary import JobStatus

if TYPE_CHECKING:
    import aiosqlite

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RELOAD_OUTCOMES = ("ok", "rejected")
VAULT_OUTCOMES = ("ok", "denied", "security_alert")
# Jobs whose identity is remembered until they end; older entries are forgotten first.
MAX_TRACKED_JOBS = 50_000


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)  # per bucket, not cumulative
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break
        self.count += 1
        self.total += seconds

    def copy(self) -> _Histogram:
        h = _Histogram()
        h.counts, h.count, h.total = list(self.counts), self.count, self.total
        return h


class Metrics:
    def __init__(self, max_workers: int, version: str, commit: str) -> None:
        self.max_workers = max_workers
        self.version = version
        self.commit = commit
        self._lock = threading.Lock()
        self._events_appended = 0
        self._completed: dict[tuple[str, str], int] = {}
        self._durations: dict[tuple[str, str], _Histogram] = {}
        self._jobs: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._webhooks: dict[tuple[str, str], int] = {}
        self._reloads = dict.fromkeys(RELOAD_OUTCOMES, 0)
        self._vault = dict.fromkeys(VAULT_OUTCOMES, 0)

    # --- recording ---------------------------------------------------------------------------

    def observe(self, records: Sequence[Recorded]) -> None:
        """Commit listener: count appended events, terminal jobs and attempt durations."""
        with self._lock:
            self._events_appended += len(records)
            for rec in records:
                e = rec.event
                match e:
                    case JobEnqueued():
                        self._remember(e.job_id, e.plugin, e.command)
                    case JobStarted():
                        if e.plugin:
                            self._remember(e.job_id, e.plugin, e.command)
                    case JobSucceeded():
                        self._duration(e.job_id, e, e.duration_ms)
                        self._terminal(e.job_id, e, JobStatus.SUCCEEDED)
                    case JobFailed():
                        self._duration(e.job_id, e, e.duration_ms)
                        self._terminal(e.job_id, e, e.status)
                    case JobRetryScheduled():
                        self._duration(e.job_id, e, e.duration_ms)
                    case JobDead():
                        self._terminal(e.job_id, e, JobStatus.DEAD)
                    case JobSkipped():
                        self._terminal(e.job_id, e, JobStatus.SKIPPED)

    def webhook_request(self, endpoint: str, status: int | str) -> None:
        with self._lock:
            key = (endpoint, str(status))
            self._webhooks[key] = self._webhooks.get(key, 0) + 1

    def config_reload(self, outcome: str) -> None:
        with self._lock:
            self._reloads[outcome] = self._reloads.get(outcome, 0) + 1

    def vault_delivery(self, outcome: str) -> None:
        with self._lock:
            self._vault[outcome] = self._vault.get(outcome, 0) + 1

    def _remember(self, job_id: str, plugin: str, command: str) -> None:
        self._jobs[job_id] = (plugin, command)
        self._jobs.move_to_end(job_id)
        while len(self._jobs) > MAX_TRACKED_JOBS:
            self._jobs.popitem(last=False)

    def _identity(self, job_id: str, event: object) -> tuple[str, str] | None:
        plugin = getattr(event, "plugin", None)
        if plugin:
            return plugin, getattr(event, "command", None) or self._jobs.get(job_id, ("", ""))[1]
        return self._jobs.get(job_id)

    def _duration(self, job_id: str, event: object, duration_ms: int | None) -> None:
        ident = self._identity(job_id, event)
        if ident is None or duration_ms is None:
            return
        hist = self._durations.get(ident)
        if hist is None:
            hist = self._durations[ident] = _Histogram()
        hist.observe(duration_ms / 1000)

    def _terminal(self, job_id: str, event: object, status: str) -> None:
        ident = self._identity(job_id, event)
        self._jobs.pop(job_id, None)
        if ident is None:
            return
        key = (ident[0], status)
        self._completed[key] = self._completed.get(key, 0) + 1

    # --- rendering ---------------------------------------------------------------------------

    async def render(self, conn: aiosqlite.Connection, head: int, sse_subscribers: int, uptime_seconds: int,
                     last_tick_ns: int | None = None) -> str:
        part = await queue_partition(conn, now_ns())
        breakers_open = await fetch_value(conn, "SELECT COUNT(*) FROM circuit_breakers WHERE state = 'open'")
        with self._lock:
            appended = self._events_appended
            completed = dict(self._completed)
            durations = {k: h.copy() for k, h in self._durations.items()}
            webhooks = dict(self._webhooks)
            reloads = dict(self._reloads)
            vault = dict(self._vault)

        out = Exposition()
        out.family("ductile_queue_depth", "gauge", "Outstanding jobs by status (queued, retry_wait, running).")
        for status in ("queued", "retry_wait", "running"):
            out.sample("ductile_queue_depth", part["depth"][status], status=status)
        out.family("ductile_jobs_completed_total", "counter", "Terminal jobs since the process started.")
        for (plugin, status), n in sorted(completed.items()):
            out.sample("ductile_jobs_completed_total", n, plugin=plugin, status=status)
        out.family("ductile_job_duration_seconds", "histogram", "Plugin attempt wall time.")
        for (plugin, command), hist in sorted(durations.items()):
            cumulative = 0
            for bound, n in zip(BUCKETS, hist.counts, strict=True):
                cumulative += n
                out.sample("ductile_job_duration_seconds_bucket", cumulative, plugin=plugin, command=command,
                           le=_number(bound))
            out.sample("ductile_job_duration_seconds_bucket", hist.count, plugin=plugin, command=command, le="+Inf")
            out.sample("ductile_job_duration_seconds_sum", hist.total, plugin=plugin, command=command)
            out.sample("ductile_job_duration_seconds_count", hist.count, plugin=plugin, command=command)
        out.family("ductile_event_log_position", "gauge", "The last committed event log position.")
        out.sample("ductile_event_log_position", head)
        out.family("ductile_events_appended_total", "counter", "Events appended since the process started.")
        out.sample("ductile_events_appended_total", appended)
        out.family("ductile_sse_subscribers", "gauge", "Open /events streams.")
        out.sample("ductile_sse_subscribers", sse_subscribers)
        out.family("ductile_workers_busy", "gauge", "Workers running a job.")
        out.sample("ductile_workers_busy", part["depth"]["running"])
        out.family("ductile_workers_max", "gauge", "service.max_workers.")
        out.sample("ductile_workers_max", self.max_workers)
        out.family("ductile_circuit_breakers_open", "gauge", "(plugin, command) circuit breakers that are open.")
        out.sample("ductile_circuit_breakers_open", breakers_open)
        out.family("ductile_webhook_requests_total", "counter", "Webhook responses by endpoint and status.")
        for (endpoint, status), n in sorted(webhooks.items()):
            out.sample("ductile_webhook_requests_total", n, endpoint=endpoint, status=status)
        out.family("ductile_config_reloads_total", "counter", "Config reload attempts by outcome.")
        for outcome, n in sorted(reloads.items()):
            out.sample("ductile_config_reloads_total", n, outcome=outcome)
        out.family("ductile_vault_deliveries_total", "counter", "Secret compositions at plugin spawn by outcome.")
        for outcome, n in sorted(vault.items()):
            out.sample("ductile_vault_deliveries_total", n, outcome=outcome)
        out.family("ductile_build_info", "gauge", "Build information; always 1.")
        out.sample("ductile_build_info", 1, version=self.version, commit=self.commit)
        out.family("ductile_uptime_seconds", "gauge", "Seconds since the gateway started.")
        out.sample("ductile_uptime_seconds", uptime_seconds)
        out.family("ductile_scheduler_last_tick_timestamp_seconds", "gauge", "Unix time of the scheduler's last tick.")
        out.sample("ductile_scheduler_last_tick_timestamp_seconds", (last_tick_ns or 0) / 1e9)
        return out.text()


class Exposition:
    """Builds a Prometheus text exposition (format 0.0.4)."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self._lines.append(f"{name}{_labels(labels.items())} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))
