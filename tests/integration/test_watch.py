"""`system watch` and the §9 monitoring fields against a real gateway (operations.md §9, cli.md §3).

The app runs headless (textual's run_test) on the real HttpFeed: jobs enqueued over the API
appear and complete; a running job's elapsed time ticks on the [5] Jobs tab and a failure shows
there with its error; the gateway is stopped (DISCONNECTED) and started again, and the stream
resumes from the last id it received without showing any frame twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import DataTable

from ductile.tui.app import WatchApp
from ductile.tui.feed import HttpFeed
from tests.integration.daemon import TOKEN, Daemon, call
from tests.prometheus_text import parse_exposition


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = Daemon(tmp_path_factory.mktemp("watch"), {
        "shellok": {"enabled": True, "schedules": [{"id": "hourly", "every": "1h", "timezone": "UTC"}]},
        "behave": {"enabled": True, "retry": {"max_attempts": 1}}})
    d.start()
    yield d
    d.close()


def test_healthz_carries_the_scheduler_heartbeat(gw: Daemon) -> None:
    body = call(gw, "GET", "/healthz", token=None).json()
    assert body["status"] == "ok" and "degraded" not in body
    assert body["scheduler"]["late"] is False
    assert body["scheduler"]["last_tick_at"].endswith("Z")
    for key in ("uptime_seconds", "queue_depth", "plugins_loaded", "plugins_circuit_open", "config_path",
                "binary_path", "version", "posture", "event_log_position"):
        assert key in body


def test_metrics_expose_max_workers_and_the_last_tick(gw: Daemon) -> None:
    _, samples = parse_exposition(call(gw, "GET", "/metrics").text)
    assert samples["ductile_workers_max"] == 4
    assert abs(samples["ductile_scheduler_last_tick_timestamp_seconds"] - time.time()) < 120


def test_watch_without_a_tty_exits_2(gw: Daemon) -> None:
    done = gw.cli("system", "watch", "--api-url", gw.url)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: system watch needs an interactive terminal"


def _rows(app: WatchApp, name: str) -> list[list[str]]:
    table = app.query_one(f"#{name}-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _header(app: WatchApp) -> str:
    return str(app.query_one("#header").render())


async def _until(pilot: Any, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.2)


class RecordingFeed(HttpFeed):
    """The real feed, noting the Last-Event-ID of each (re)connection."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url, key)
        self.resumed_from: list[str | None] = []

    def events(self, last_event_id: str | None) -> Any:
        self.resumed_from.append(last_event_id)
        return super().events(last_event_id)


def _seconds(elapsed: str) -> int:
    minutes, _, seconds = elapsed.removesuffix("s").partition("m")
    return int(minutes) * 60 + int(seconds)


def test_watch_shows_a_running_jobs_elapsed_time_ticking_and_a_failure(gw: Daemon) -> None:
    async def main() -> None:
        app = WatchApp(HttpFeed(gw.url, TOKEN))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: _header(app).startswith("OK "), "the header to read OK")
            await pilot.press("5")
            sleeper = await asyncio.to_thread(gw.trigger, "behave", payload={"mode": "sleep", "seconds": 6})

            def elapsed() -> int | None:
                row = next((r for r in _rows(app, "jobs") if r[4] == sleeper[:8]), None)
                return _seconds(row[1]) if row and row[0] == "running" else None

            await _until(pilot, lambda: elapsed() is not None, "the sleeping job to show as running")
            first = elapsed()
            assert first is not None and first < 6
            await _until(pilot, lambda: (elapsed() or 0) >= first + 2, "its elapsed time to tick")
            assert _rows(app, "jobs")[0][2:4] == ["behave", "poll"]

            broken = await asyncio.to_thread(gw.trigger, "behave", payload={"mode": "error", "error": "watch saw it"})
            await _until(pilot, lambda: ["failed", "behave", "poll", broken[:8], "watch saw it"] in
                         [[r[0], *r[2:]] for r in _rows(app, "jobs")], "the failure with its error")
            await _until(pilot, lambda: any(r[0] == "succeeded" and r[4] == sleeper[:8] for r in _rows(app, "jobs")),
                         "the sleeping job to complete")
            assert all(r[4] != sleeper[:8] for r in _rows(app, "jobs") if r[0] == "running")
            assert "workers" in str(app.query_one("#jobs-summary").render())  # /analytics/queue answered
            await pilot.press("q")
    asyncio.run(main())


def test_watch_follows_jobs_and_resumes_after_a_gateway_restart(gw: Daemon) -> None:
    feed = RecordingFeed(gw.url, TOKEN)

    async def main() -> None:
        app = WatchApp(feed)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: _header(app).startswith("OK "), "the header to read OK")
            assert f"api {gw.url}" in _header(app)
            await _until(pilot, lambda: any(r[1] == "hourly" for r in _rows(app, "scheduler")), "the schedule")

            first = await asyncio.to_thread(gw.trigger, "shellok")
            await _until(pilot, lambda: ["job.completed", first[:8]] in [[r[1], r[3]] for r in _rows(app, "events")],
                         "the first job to complete on screen")

            await asyncio.to_thread(gw.stop)
            await _until(pilot, lambda: _header(app).startswith("DISCONNECTED"), "DISCONNECTED")
            assert any(r[3] == first[:8] for r in _rows(app, "events"))  # panels keep their last data

            await asyncio.to_thread(gw.start)
            second = await asyncio.to_thread(gw.trigger, "shellok")
            await _until(pilot, lambda: ["job.completed", second[:8]] in [[r[1], r[3]] for r in _rows(app, "events")],
                         "the second job after the restart")
            await _until(pilot, lambda: _header(app).startswith("OK "), "the header to read OK again")
            shown = [(r[1], r[3]) for r in _rows(app, "events")]
            assert shown.count(("job.completed", first[:8])) == 1  # resumed: nothing shown twice
            assert shown.count(("job.enqueued", first[:8])) == 1
            # Every reconnection resumed from the last id received, never from the start.
            assert feed.resumed_from[0] is None and len(feed.resumed_from) >= 2
            assert all(i is not None for i in feed.resumed_from[1:])
            await pilot.press("q")
    asyncio.run(main())
