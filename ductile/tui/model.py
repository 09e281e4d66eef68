"""The ``system watch`` dashboard's state as plain data (cli.md §3), updated from SSE frames and
read-API answers. Pure: no I/O, no clock (``now`` is an argument), no textual, so every rule the
screen shows (dedupe on resume, pipeline status, which events are listed, running jobs and their
elapsed time, recent completions and failures, open breakers) is unit-tested here.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any

import msgspec

from ductile.events.timefmt import NS, parse_rfc3339
from ductile.vocabulary import CircuitState, JobStatus

MAX_EVENTS = 100
MAX_FINISHED = 50  # recent completions and failures listed under the running jobs
MAX_ENDED = 1000  # ended job ids remembered so a late /jobs answer cannot bring one back
HIDDEN_TYPES = frozenset({"scheduler.tick"})
# Terminal job frames, and whether each one means the pipeline instance failed.
TERMINAL_FAILED = {"job.completed": False, "job.skipped": False, "job.failed": True, "job.timed_out": True,
                   "job.retry_exhausted": True}


# The job frames after which a job is no longer running: the terminal ones above, plus a retry
# (the job waits in the queue again) and a crash recovery (re-queued). ``job.retry_exhausted``
# always comes with its ``job.failed``/``job.timed_out``, so it is not a completion of its own.
NOT_RUNNING = frozenset({"job.retry_scheduled", "job.recovered"})
FINISHED_TYPES = frozenset(TERMINAL_FAILED) - {"job.retry_exhausted"}
BREAKER_FRAME = "scheduler.circuit_state_changed"


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


class RunningJob(msgspec.Struct):
    job_id: str
    plugin: str
    command: str
    started_ns: int | None = None
    absent: int = 0  # consecutive /jobs?status=running answers that did not list it


class FinishedJob(msgspec.Struct, frozen=True):
    job_id: str
    plugin: str
    command: str
    status: str
    ended_ns: int | None
    error: str = ""


class Breaker(msgspec.Struct):
    """One (plugin, command) breaker: ``since_ns`` and ``failures`` are known only from frames."""

    plugin: str
    command: str
    state: str
    failures: int | None = None
    since_ns: int | None = None
    job_id: str | None = None
    frame_seq: int = -1  # the ``Dashboard.applied`` count when a frame last set it


def age(seconds: int) -> str:
    """A coarse age in one unit: ``42s``, ``5m``, ``2h``, ``3d``."""
    s = max(0, seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def relative(ns: int | None, now_ns: int) -> str:
    return "-" if ns is None else f"{age((now_ns - ns) // NS)} ago"


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _at_ns(data: dict[str, Any]) -> int | None:
    return _ns(data.get("at"))


def _ns(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
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
        self.running: dict[str, RunningJob] = {}
        self.finished: deque[FinishedJob] = deque(maxlen=MAX_FINISHED)  # newest first
        self._ended: dict[str, None] = {}  # an insertion-ordered set, oldest first
        self.queue: dict[str, Any] | None = None  # the last /analytics/queue answer
        self.breakers: dict[tuple[str, str], Breaker] = {}
        # Frames applied so far: a poll answer asked for at count n loses to a frame applied after n.
        self.applied = 0

    # --- inputs ------------------------------------------------------------------------------

    def apply(self, frame: Frame) -> bool:
        """Take one frame; False when it was already seen (a resumed stream replays nothing twice)."""
        if frame.id is not None:
            if self.last_event_id is not None and frame_key(frame.id) <= frame_key(self.last_event_id):
                return False
            self.last_event_id = frame.id
        self.applied += 1
        if frame.type == "scheduler.tick":
            self.beats += 1
        self._track_pipelines(frame)
        self._track_jobs(frame)
        if frame.type == BREAKER_FRAME:
            self._track_breaker(frame.data)
        if frame.type not in HIDDEN_TYPES:
            self.events.appendleft(self._row(frame))
        return True

    def set_health(self, health: dict[str, Any] | None) -> None:
        """A ``/healthz`` answer, or None when the gateway could not be reached."""
        self.health = health
        self.connected = health is not None

    def set_disconnected(self) -> None:
        self.connected = False

    def set_schedules(self, jobs: list[dict[str, Any]], asked_at: int | None = None) -> None:
        """A ``/scheduler/jobs`` answer; ``asked_at`` is ``applied`` when it was asked for, so a
        breaker frame that arrived meanwhile is not undone by the (older) poll."""
        self.schedules = jobs
        self.forbidden.pop("scheduler", None)
        self.forbidden.pop("breakers", None)  # the breakers list is read from the same answer
        asked = self.applied if asked_at is None else asked_at
        for j in jobs:
            plugin, command, state = j.get("plugin"), j.get("command"), j.get("breaker_state")
            if not (isinstance(plugin, str) and isinstance(command, str) and isinstance(state, str)):
                continue
            known = self.breakers.get((plugin, command))
            if known is None:
                self.breakers[(plugin, command)] = Breaker(plugin, command, state)
            elif known.frame_seq <= asked and known.state != state:
                known.state, known.failures, known.since_ns, known.job_id = state, None, None, None

    def set_running(self, jobs: list[dict[str, Any]]) -> None:
        """A ``GET /jobs?status=running`` answer: adds the jobs that started before the stream's
        window, and drops one its end frame never reached (absent from two answers in a row: a
        single absence may be a job that started after the answer was read)."""
        listed = set()
        for j in jobs:
            job_id = j.get("job_id")
            if not isinstance(job_id, str) or job_id in self._ended:
                continue
            listed.add(job_id)
            row = self.running.get(job_id)
            if row is None:
                self.running[job_id] = RunningJob(job_id, _str(j, "plugin"), _str(j, "command"),
                                                  _ns(j.get("started_at")))
            else:
                row.absent = 0
                row.started_ns = row.started_ns or _ns(j.get("started_at"))
        for job_id in [k for k in self.running if k not in listed]:
            row = self.running[job_id]
            row.absent += 1
            if row.absent >= 2:
                del self.running[job_id]
        self.forbidden.pop("jobs", None)

    def set_queue(self, queue: dict[str, Any]) -> None:
        """An ``/analytics/queue`` answer (api.md §4.5)."""
        self.queue = queue

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

    # --- jobs and breakers ------------------------------------------------------------------

    def _track_jobs(self, frame: Frame) -> None:
        d = frame.data
        job_id = _str(d, "job_id")
        if not job_id:
            return
        if frame.type == "job.started":
            if job_id not in self._ended:
                self.running[job_id] = RunningJob(job_id, _str(d, "plugin"), _str(d, "command"), _at_ns(d))
        elif frame.type in NOT_RUNNING:
            self.running.pop(job_id, None)
        elif frame.type in FINISHED_TYPES:
            self.running.pop(job_id, None)
            self._ended[job_id] = None
            if len(self._ended) > MAX_ENDED:
                del self._ended[next(iter(self._ended))]
            status = _str(d, "status") or {"job.skipped": JobStatus.SKIPPED,
                                            "job.timed_out": JobStatus.TIMED_OUT}.get(frame.type, "")
            self.finished.appendleft(FinishedJob(job_id, _str(d, "plugin"), _str(d, "command"), status,
                                                 _at_ns(d), _str(d, "error") or _str(d, "reason")))

    def _track_breaker(self, d: dict[str, Any]) -> None:
        plugin, command, state = _str(d, "plugin"), _str(d, "command"), _str(d, "to_state")
        if not (plugin and command and state):
            return
        failures = d.get("failure_count")
        self.breakers[(plugin, command)] = Breaker(
            plugin, command, state, failures if isinstance(failures, int) else None, _at_ns(d),
            _str(d, "job_id") or None, self.applied)

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

    def job_rows(self, now_ns: int) -> list[tuple[str, str, str, str, str, str]]:
        """``STATUS TIME PLUGIN COMMAND JOB DETAIL``: running jobs, longest running first, with the
        time they have been running; then recent completions and failures, newest first."""
        running = self._running_longest_first()
        rows = [(JobStatus.RUNNING.value, _elapsed(r.started_ns, now_ns), r.plugin, r.command, r.job_id[:8], "")
                for r in running]
        rows += [(f.status, relative(f.ended_ns, now_ns), f.plugin, f.command, f.job_id[:8], f.error)
                 for f in self.finished]
        return rows

    def job_ids(self) -> list[str]:
        """The full job id of each ``job_rows`` row, in the same order."""
        return [r.job_id for r in self._running_longest_first()] + [f.job_id for f in self.finished]

    def _running_longest_first(self) -> list[RunningJob]:
        return sorted(self.running.values(), key=lambda r: (r.started_ns is None, r.started_ns or 0, r.job_id))

    def queue_line(self) -> str:
        q = self.queue
        if not q:
            return "queue -"
        depth = q.get("depth") if isinstance(q.get("depth"), dict) else {}
        workers = q.get("workers") if isinstance(q.get("workers"), dict) else {}
        # Running jobs are the rows below and busy workers count them: 40 columns leave no room
        # to say it twice.
        line = (f"queued {depth.get('queued', '-')} retry {depth.get('retry_wait', '-')} "
                f"workers {workers.get('busy', '-')}/{workers.get('total', '-')}")
        oldest = q.get("oldest_queued_age_seconds")
        if isinstance(oldest, int | float):
            line += f" oldest {age(int(oldest))}"
        return line

    def open_breakers(self) -> list[Breaker]:
        """Breakers not closed (open or half-open), by plugin then command."""
        return [b for _, b in sorted(self.breakers.items()) if b.state != CircuitState.CLOSED]

    def breaker_rows(self, now_ns: int) -> list[tuple[str, str, str, str, str]]:
        """``PLUGIN COMMAND STATE FAILS SINCE`` of the open breakers."""
        return [(b.plugin, b.command, b.state, "-" if b.failures is None else str(b.failures),
                 relative(b.since_ns, now_ns)) for b in self.open_breakers()]


def _elapsed(start_ns: int | None, now_ns: int) -> str:
    return "-" if start_ns is None else duration(max(0, now_ns - start_ns) // NS)
