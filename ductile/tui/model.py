"""The ``system watch`` dashboard's state as plain data (cli.md §3), updated from SSE frames and
read-API answers. Pure: no I/O, no clock (``now`` is an argument), no textual, so every rule the
screen shows (dedupe on resume, pipeline status, which events are listed) is unit-tested here.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any

import msgspec

from ductile.events.timefmt import NS, parse_rfc3339

MAX_EVENTS = 100
HIDDEN_TYPES = frozenset({"scheduler.tick"})
# Terminal job frames, and whether each one means the pipeline instance failed.
TERMINAL_FAILED = {"job.completed": False, "job.skipped": False, "job.failed": True, "job.timed_out": True,
                   "job.retry_exhausted": True}


class Status(StrEnum):
    """The header's service status."""

    OK = "OK"
    DEGRADED = "DEGRADED"
    DISCONNECTED = "DISCONNECTED"


class PipelineStatus(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


class Frame(msgspec.Struct, frozen=True):
    """One SSE frame: ``id`` is None for a live (unlogged) frame."""

    type: str
    data: dict[str, Any]
    id: str | None = None


def frame_key(frame_id: str) -> tuple[int, int]:
    """``N`` or ``N.k`` as a sortable pair (api.md §5); a malformed id sorts first."""
    head, _, extra = frame_id.partition(".")
    try:
        return int(head), int(extra or 0)
    except ValueError:
        return (-1, 0)


class EventRow(msgspec.Struct, frozen=True):
    time: str
    type: str
    plugin: str
    job: str
    summary: str
    job_id: str | None = None


class PipelineRow(msgspec.Struct):
    name: str
    trigger: str = ""
    status: PipelineStatus = PipelineStatus.IDLE
    last_activity_ns: int | None = None
    last_job_id: str | None = None


class Instance(msgspec.Struct):
    """One pipeline run: the jobs still outstanding and whether any failed."""

    pipeline: str
    outstanding: set[str] = msgspec.field(default_factory=set)
    failed: bool = False


def relative(ns: int | None, now_ns: int) -> str:
    if ns is None:
        return "-"
    s = max(0, (now_ns - ns) // NS)
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _at_ns(data: dict[str, Any]) -> int | None:
    at = data.get("at")
    if not isinstance(at, str):
        return None
    try:
        return parse_rfc3339(at)
    except ValueError:
        return None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def summary(frame: Frame) -> str:
    d = frame.data
    for key in ("error", "reason", "status", "pipeline", "schedule_id", "detail"):
        if isinstance(d.get(key), str) and d[key]:
            return d[key]
    return ""


class Dashboard:
    """What the screen shows. Feed it frames with ``apply`` and API answers with ``set_*``."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.connected = False
        self.health: dict[str, Any] | None = None
        self.last_event_id: str | None = None
        self.events: deque[EventRow] = deque(maxlen=MAX_EVENTS)  # newest first
        self.pipelines: dict[str, PipelineRow] = {}
        self.schedules: list[dict[str, Any]] = []
        self.beats = 0  # scheduler.tick frames seen: the heartbeat pulses on each
        self.forbidden: dict[str, str] = {}  # panel -> the scope it needs
        self._instances: dict[str, Instance] = {}  # root job id -> instance
        self._instance_of: dict[str, str] = {}  # job id -> root job id

    # --- inputs ------------------------------------------------------------------------------

    def apply(self, frame: Frame) -> bool:
        """Take one frame; False when it was already seen (a resumed stream replays nothing twice)."""
        if frame.id is not None:
            if self.last_event_id is not None and frame_key(frame.id) <= frame_key(self.last_event_id):
                return False
            self.last_event_id = frame.id
        if frame.type == "scheduler.tick":
            self.beats += 1
        self._track_pipelines(frame)
        if frame.type not in HIDDEN_TYPES:
            self.events.appendleft(self._row(frame))
        return True

    def set_health(self, health: dict[str, Any] | None) -> None:
        """A ``/healthz`` answer, or None when the gateway could not be reached."""
        self.health = health
        self.connected = health is not None

    def set_disconnected(self) -> None:
        self.connected = False

    def set_schedules(self, jobs: list[dict[str, Any]]) -> None:
        self.schedules = jobs
        self.forbidden.pop("scheduler", None)

    def set_skills(self, skills: list[dict[str, Any]]) -> None:
        """The pipeline catalog from ``/skills``: rows appear for every pipeline, activity kept."""
        names = set()
        for skill in skills:
            if skill.get("kind") != "pipeline" or not isinstance(skill.get("pipeline"), str):
                continue
            name = skill["pipeline"]
            names.add(name)
            row = self.pipelines.setdefault(name, PipelineRow(name=name))
            row.trigger = str(skill.get("trigger") or "")
        for gone in set(self.pipelines) - names:
            if self.pipelines[gone].last_activity_ns is None:
                del self.pipelines[gone]
        self.forbidden.pop("pipelines", None)

    def set_forbidden(self, panel: str, scope: str) -> None:
        self.forbidden[panel] = scope

    # --- pipelines ---------------------------------------------------------------------------

    def _track_pipelines(self, frame: Frame) -> None:
        d = frame.data
        job_id = _str(d, "job_id")
        at = _at_ns(d)
        if frame.type == "pipeline.enqueued":
            name = _str(d, "pipeline")
            if not name or not job_id:
                return
            ids = [j for j in d.get("job_ids") or [job_id] if isinstance(j, str)]
            self._instances[job_id] = Instance(pipeline=name, outstanding=set(ids))
            for j in ids:
                self._instance_of[j] = job_id
            self._touch(name, PipelineStatus.RUNNING, at, job_id)
        elif frame.type == "router.enqueued":
            root = self._instance_of.get(_str(d, "parent_job_id"))
            if root is None or not job_id:
                return
            self._instance_of[job_id] = root
            inst = self._instances[root]
            inst.outstanding.add(job_id)
            self._touch(inst.pipeline, PipelineStatus.RUNNING, at, root)
        elif frame.type in TERMINAL_FAILED:
            root = self._instance_of.get(job_id)
            if root is None:
                return
            inst = self._instances[root]
            inst.outstanding.discard(job_id)
            inst.failed |= TERMINAL_FAILED[frame.type]
            if inst.outstanding:
                status = PipelineStatus.RUNNING
            else:
                status = PipelineStatus.FAILED if inst.failed else PipelineStatus.OK
            self._touch(inst.pipeline, status, at, root)

    def _touch(self, name: str, status: PipelineStatus, at: int | None, root: str) -> None:
        row = self.pipelines.setdefault(name, PipelineRow(name=name))
        row.status = status
        row.last_job_id = root
        if at is not None:
            row.last_activity_ns = at

    # --- outputs -----------------------------------------------------------------------------

    def _row(self, frame: Frame) -> EventRow:
        d = frame.data
        at = _str(d, "at")
        job_id = _str(d, "job_id") or None
        return EventRow(time=at[11:19] if len(at) >= 19 else at, type=frame.type, plugin=_str(d, "plugin"),
                        job=(job_id or "")[:8], summary=summary(frame), job_id=job_id)

    @property
    def status(self) -> Status:
        if not self.connected or self.health is None:
            return Status.DISCONNECTED
        return Status.DEGRADED if self.health.get("status") == "degraded" else Status.OK

    @property
    def late(self) -> bool:
        sched = (self.health or {}).get("scheduler")
        return isinstance(sched, dict) and bool(sched.get("late"))

    def header_lines(self) -> list[str]:
        h = self.health or {}
        beat = "late" if self.late else ("♥" if self.beats % 2 else "♡")
        return [
            f"{self.status.value}  up {duration(h.get('uptime_seconds'))}  queue {h.get('queue_depth', '-')}"
            f"  plugins {h.get('plugins_loaded', '-')}  v{h.get('version', '-')}  tick {beat}",
            f"api {self.api_url}  config {h.get('config_path', '-')}",
            f"bin {h.get('binary_path', '-')}",
        ]

    def pipeline_rows(self, now_ns: int) -> list[tuple[str, str, str, str]]:
        return [(r.name, r.trigger, r.status.value, relative(r.last_activity_ns, now_ns))
                for r in sorted(self.pipelines.values(), key=lambda r: r.name)]

    def scheduler_rows(self) -> list[tuple[str, str, str, str, str, str, str]]:
        rows = []
        for j in self.schedules:
            nxt = str(j.get("next_run_at") or "-")
            rows.append((str(j.get("plugin", "")), str(j.get("schedule_id", "")), str(j.get("command", "")),
                         str(j.get("mode", "")), str(j.get("status", "")), nxt.replace("T", " ").rstrip("Z"),
                         str(j.get("breaker_state") or "-")))
        return rows

    def event_rows(self) -> list[EventRow]:
        return list(self.events)

    def pipeline_job(self, name: str) -> str | None:
        row = self.pipelines.get(name)
        return row.last_job_id if row else None
