"""The watch app driven by textual's Pilot against a fake feed (cli.md §3 keys and panels)."""

import asyncio
from typing import Any

from textual.widgets import DataTable, TabbedContent

from ductile.tui.app import WatchApp
from ductile.tui.feed import ScopeMissing

from .fake_feed import NOW, SKILLS, FakeFeed


def run(coro_fn, feed: FakeFeed | None = None):  # type: ignore[no-untyped-def]
    feed = feed or FakeFeed()

    async def main() -> None:
        app = WatchApp(feed, clock=lambda: NOW)
        async with app.run_test(size=(80, 24)) as pilot:
            if type(feed) is FakeFeed and feed.up:
                await _settled(pilot)  # a fixed pause loses to a loaded machine
            else:
                await pilot.pause(0.1)  # a feed that fails or refuses never settles
            app.redraw()
            await coro_fn(app, pilot)
    asyncio.run(main())


def cells(app: WatchApp, name: str) -> list[list[str]]:
    table = app.query_one(f"#{name}-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_it_starts_on_events_filled_from_the_stream_with_the_header_and_pipelines() -> None:
    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        assert app.focused is app.query_one("#events-table")
        assert [r[1] for r in cells(app, "events")] == ["scheduler.circuit_state_changed", "job.started",
                                                          "job.failed", "job.completed", "job.started",
                                                          "pipeline.enqueued"]
        assert cells(app, "pipelines") == [["intake", "api.intake", "ok", "56s ago"]]
        assert str(app.query_one("#header").render()).startswith("OK  up 1h02m  queue 2")
    run(check)


def test_number_keys_select_tabs_tab_switches_column_and_j_k_move() -> None:
    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("2")
        assert app.query_one("#left", TabbedContent).active == "scheduler"
        assert app.focused is app.query_one("#scheduler-table")
        assert cells(app, "scheduler")[0][5] == "2026-01-01 10:05:00"
        await pilot.press("tab")
        assert app.focused is app.query_one("#events-table")
        await pilot.press("j", "j")
        assert app.query_one("#events-table", DataTable).cursor_row == 2
        await pilot.press("k")
        assert app.query_one("#events-table", DataTable).cursor_row == 1
        await pilot.press("1")
        assert app.query_one("#left", TabbedContent).active == "pipelines"
        await pilot.press("4")
        assert app.query_one("#right", TabbedContent).active == "inspector"
    run(check)


def test_enter_on_an_event_opens_its_job_tree_in_the_inspector() -> None:
    feed = FakeFeed()

    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("j", "j", "j", "enter")
        await _until(pilot, lambda: bool(feed.trees) and app.query_one("#right", TabbedContent).active == "inspector")
        await pilot.pause(0.05)
        app.redraw()
        assert feed.trees == ["aaaa1111"]
        assert app.query_one("#right", TabbedContent).active == "inspector"
        assert cells(app, "inspector") == [["aaaa1111", "echo", "poll", "succeeded", "s1"]]
    run(check, feed)


def test_5_lists_running_jobs_with_elapsed_time_ticking_then_recent_completions_and_failures() -> None:
    clock = [NOW]

    async def main() -> None:
        app = WatchApp(FakeFeed(), clock=lambda: clock[0])
        async with app.run_test(size=(80, 24)) as pilot:
            await _settled(pilot)
            await pilot.press("5")
            assert app.query_one("#left", TabbedContent).active == "jobs"
            assert app.focused is app.query_one("#jobs-table")
            app.redraw()
            assert cells(app, "jobs") == [
                ["running", "2m00s", "echo", "poll", "dddd4444", ""],  # from /jobs?status=running
                ["running", "0m54s", "mail", "send", "cccc3333", ""],  # from its job.started frame
                ["failed", "55s ago", "mail", "send", "bbbb2222", "HTTP 500"],
                ["succeeded", "56s ago", "echo", "poll", "aaaa1111", ""],
            ]
            assert str(app.query_one("#jobs-summary").render()) == (
                "queued 12 retry 2 workers 3/4 oldest 42s")
            clock[0] += 65 * 10**9
            # the once-a-second redraw moves the elapsed time (give a loaded machine a few seconds)
            await _until(pilot, lambda: cells(app, "jobs")[0][1] == "3m05s")
            assert [r[1] for r in cells(app, "jobs")] == ["3m05s", "1m59s", "2m ago", "2m ago"]
    asyncio.run(main())


def test_6_lists_open_breakers_and_enter_inspects_the_job_that_tripped_one() -> None:
    feed = FakeFeed()

    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("6")
        assert app.query_one("#right", TabbedContent).active == "breakers"
        assert cells(app, "breakers") == [["mail", "send", "open", "3", "53s ago"]]
        await pilot.press("enter")
        await _until(pilot, lambda: feed.trees)
        assert feed.trees == ["bbbb2222"] and app.query_one("#right", TabbedContent).active == "inspector"
    run(check, feed)


def test_enter_on_a_running_job_opens_its_tree() -> None:
    feed = FakeFeed()

    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("5", "j", "enter")
        await _until(pilot, lambda: feed.trees)
        assert feed.trees == ["cccc3333"]
    run(check, feed)


class JobsForbiddenFeed(FakeFeed):
    """A token without ``jobs:status:ro``: /jobs, /analytics/queue and /scheduler/jobs answer 403."""

    async def running_jobs(self) -> list[dict[str, Any]]:
        raise ScopeMissing("jobs:status:ro")

    async def queue(self) -> dict[str, Any]:
        raise ScopeMissing("jobs:status:ro")

    async def schedules(self) -> list[dict[str, Any]]:
        raise ScopeMissing("jobs:status:ro")


def test_the_jobs_and_breakers_tabs_name_the_scope_they_miss() -> None:
    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        missing = "insufficient scope (jobs:status:ro needed)"
        assert cells(app, "jobs") == [[missing, "", "", "", "", ""]]
        assert cells(app, "breakers") == [[missing, "", "", "", ""]]
        assert app.is_running
    run(check, JobsForbiddenFeed())


def test_q_quits_and_closes_the_feed() -> None:
    feed = FakeFeed()

    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("q")
        await _until(pilot, lambda: not app.is_running)
        assert not app.is_running
    run(check, feed)
    assert feed.closed


def test_an_unreachable_gateway_reads_disconnected_and_is_retried() -> None:
    feed = FakeFeed(up=False)

    async def check(app: WatchApp, pilot) -> None:  # type: ignore[no-untyped-def]
        assert str(app.query_one("#header").render()).startswith("DISCONNECTED")
        assert app.is_running
    run(check, feed)
    assert feed.resumed_from == [None]


async def _until(pilot, done) -> None:  # type: ignore[no-untyped-def]
    """Until ``done()`` holds (at most 4 s): what a key starts runs in a worker, which a loaded
    machine may not have scheduled within a fixed pause."""
    for _ in range(200):
        if done():
            return
        await pilot.pause(0.02)


async def _settled(pilot) -> None:  # type: ignore[no-untyped-def]
    """Until the fake feed's frames and first polls have all landed: a fixed pause is too short on
    a loaded machine, and the snapshot would catch the screen half drawn."""
    model = pilot.app.model
    last = [f.id for f in FakeFeed().frames if f.id][-1]
    pipelines = {s["pipeline"] for s in SKILLS if s.get("kind") == "pipeline"}
    for _ in range(200):
        await pilot.pause(0.02)
        if (model.last_event_id == last and model.health is not None and model.schedules
                and model.queue is not None and pipelines <= set(model.pipelines)
                and "dddd4444" in model.running and model.breakers):
            return
    raise AssertionError("the fake feed never settled")


def test_the_dashboard_fits_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
        await _settled(pilot)
        pilot.app.redraw()
        await pilot.pause()
    assert snap_compare(WatchApp(FakeFeed(), clock=lambda: NOW), terminal_size=(80, 24), run_before=settle)


def test_the_jobs_and_breakers_tabs_fit_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
        await _settled(pilot)
        await pilot.press("5", "6")
        pilot.app.redraw()
        await pilot.pause()
    assert snap_compare(WatchApp(FakeFeed(), clock=lambda: NOW), terminal_size=(80, 24), run_before=settle)


def test_a_redraw_tick_while_the_app_closes_is_skipped_not_an_error() -> None:
    # The redraw timer can fire after textual has removed the screens' widgets on the way out (seen
    # under load in CI as NoMatches on '#header'); the tick must then do nothing.
    async def main() -> WatchApp:
        app = WatchApp(FakeFeed(), clock=lambda: NOW)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.1)
        return app

    app = asyncio.run(main())
    app._dirty = True
    app._redraw_if_dirty()
    assert app._dirty, "nothing drawn: the next start draws everything anyway"
