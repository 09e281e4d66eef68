"""A scripted ``Feed`` for driving the watch app without a gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ductile.tui.feed import FeedError
from ductile.tui.model import Frame

NOW = 1_767_261_600 * 10**9  # 2026-01-01T10:00:00Z


def at(seconds: int) -> str:
    return f"2026-01-01T09:59:{seconds:02d}Z"


FRAMES = [
    Frame("pipeline.enqueued", {"at": at(1), "job_id": "aaaa1111", "job_ids": ["aaaa1111"], "job_count": 1,
                                "pipeline": "intake", "submitted_by": "api"}, "1"),
    Frame("job.started", {"at": at(2), "job_id": "aaaa1111", "plugin": "echo", "command": "poll"}, "2"),
    Frame("scheduler.tick", {"at": at(3)}),
    Frame("job.completed", {"at": at(4), "job_id": "aaaa1111", "plugin": "echo", "command": "poll",
                            "status": "succeeded"}, "3"),
    Frame("job.failed", {"at": at(5), "job_id": "bbbb2222", "plugin": "mail", "command": "send",
                         "status": "failed", "error": "HTTP 500"}, "4"),
    Frame("job.started", {"at": at(6), "job_id": "cccc3333", "plugin": "mail", "command": "send"}, "5"),
    Frame("scheduler.circuit_state_changed", {"at": at(7), "plugin": "mail", "command": "send", "from_state": "closed",
                                              "to_state": "open", "failure_count": 3, "reason": "failure_threshold",
                                              "job_id": "bbbb2222"}, "6"),
]
HEALTH = {"status": "ok", "uptime_seconds": 3725, "queue_depth": 2, "plugins_loaded": 3, "plugins_circuit_open": 0,
          "config_path": "/etc/ductile/config.yaml", "binary_path": "/usr/bin/ductile", "version": "0.1.0",
          "posture": "gateway", "event_log_position": 4, "scheduler": {"last_tick_at": at(3), "late": False}}
SCHEDULES = [{"plugin": "echo", "schedule_id": "fast", "command": "poll", "mode": "every", "status": "scheduled",
              "next_run_at": "2026-01-01T10:05:00Z", "breaker_state": "closed"}]
SKILLS = [{"name": "pipeline.intake", "kind": "pipeline", "pipeline": "intake", "trigger": "api.intake"}]
# A job that started before the stream's window: only /jobs?status=running knows it.
RUNNING = [{"job_id": "dddd4444", "plugin": "echo", "command": "poll", "status": "running", "submitted_by": "api",
            "attempt": 1, "created_at": "2026-01-01T09:57:59Z", "started_at": "2026-01-01T09:58:00Z"}]
QUEUE = {"captured_at": "2026-01-01T10:00:00Z", "depth": {"queued": 12, "retry_wait": 2, "running": 3},
         "depth_total": 17, "queued_by_plugin": {}, "running_by_plugin": {}, "oldest_queued_age_seconds": 42.5,
         "workers": {"busy": 3, "total": 4}}
TREE = [{"job_id": "aaaa1111", "plugin": "echo", "command": "poll", "status": "succeeded", "step_id": "s1"}]


class FakeFeed:
    api_url = "http://127.0.0.1:8080"

    def __init__(self, frames: list[Frame] = FRAMES, *, up: bool = True) -> None:
        self.frames = frames
        self.up = up
        self.resumed_from: list[str | None] = []
        self.trees: list[str] = []
        self.closed = False

    async def events(self, last_event_id: str | None) -> AsyncIterator[Frame]:
        self.resumed_from.append(last_event_id)
        if not self.up:
            raise FeedError("down")
        for f in self.frames:
            yield f
        await asyncio.Event().wait()

    async def health(self) -> dict[str, Any]:
        if not self.up:
            raise FeedError("down")
        return HEALTH

    async def schedules(self) -> list[dict[str, Any]]:
        if not self.up:
            raise FeedError("down")
        return SCHEDULES

    async def skills(self) -> list[dict[str, Any]]:
        if not self.up:
            raise FeedError("down")
        return SKILLS

    async def running_jobs(self) -> list[dict[str, Any]]:
        if not self.up:
            raise FeedError("down")
        return RUNNING

    async def queue(self) -> dict[str, Any]:
        if not self.up:
            raise FeedError("down")
        return QUEUE

    async def job_tree(self, job_id: str) -> list[dict[str, Any]]:
        self.trees.append(job_id)
        return TREE

    async def aclose(self) -> None:
        self.closed = True
