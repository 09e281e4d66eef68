"""``ductile system watch``: the textual dashboard (cli.md §3, operations.md §9).

The screen only draws ``Dashboard`` (model.py); the workers below fill it from a ``Feed``
(feed.py): the SSE stream (resumed from the last id after any drop, every 3 s), ``/healthz``,
``/jobs?status=running`` and ``/analytics/queue`` every 5 s, ``/scheduler/jobs`` every 60 s,
``/skills`` at start and after each reload. Built for 80x24 over SSH: a 3-line header and two
columns of tabbed tables. Beyond cli.md §3's four tabs (issue 14: running jobs, recent completions
and failures, open breakers): [5] Jobs on the left, [6] Breakers on the right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from ductile.events.timefmt import now_ns
from ductile.tui.feed import Feed, FeedError, ScopeMissing
from ductile.tui.model import Dashboard

RETRY_SECONDS = 3.0
HEALTH_SECONDS = 5.0
SCHEDULES_SECONDS = 60.0
JOBS_SECONDS = 5.0
REDRAW_SECONDS = 0.25
TABS = {"1": ("left", "pipelines"), "2": ("left", "scheduler"), "3": ("right", "events"), "4": ("right", "inspector"),
        "5": ("left", "jobs"), "6": ("right", "breakers")}
COLUMNS = {
    "jobs": ("STATUS", "TIME", "PLUGIN", "COMMAND", "JOB", "DETAIL"),
    "breakers": ("PLUGIN", "COMMAND", "STATE", "FAILS", "SINCE"),
    "pipelines": ("NAME", "TRIGGER", "STATUS", "LAST ACTIVITY"),
    "scheduler": ("PLUGIN", "SCHEDULE", "COMMAND", "MODE", "STATUS", "NEXT RUN", "BREAKER"),
    "events": ("TIME", "TYPE", "PLUGIN", "JOB", "SUMMARY"),
    "inspector": ("JOB", "PLUGIN", "COMMAND", "STATUS", "STEP"),
}


class WatchApp(App[int]):
    CSS = """
    #header { height: 3; background: $panel; padding: 0 1; }
    #columns { height: 1fr; }
    #left, #right { width: 1fr; }
    DataTable { height: 1fr; }
    #jobs-summary { height: auto; max-height: 2; color: $text-muted; }
    .notice { color: $warning; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", priority=True),
        Binding("tab", "switch_column", "column", priority=True),
        Binding("j", "cursor('down')", show=False),
        Binding("k", "cursor('up')", show=False),
        *(Binding(key, f"tab('{key}')", show=False) for key in TABS),
    ]

    def __init__(self, feed: Feed, *, clock: Callable[[], int] = now_ns) -> None:
        super().__init__()
        self.feed = feed
        self.clock = clock
        self.model = Dashboard(feed.api_url)
        self._dirty = True
        self._inspected: list[dict[str, Any]] = []
        self._inspect_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Horizontal(id="columns"):
            with TabbedContent(id="left", initial="pipelines"):
                with TabPane("[1] Pipelines", id="pipelines"):
                    yield DataTable(id="pipelines-table", cursor_type="row")
                with TabPane("[2] Scheduler", id="scheduler"):
                    yield DataTable(id="scheduler-table", cursor_type="row")
                with TabPane("[5] Jobs", id="jobs"):
                    yield Static(id="jobs-summary")
                    yield DataTable(id="jobs-table", cursor_type="row")
            with TabbedContent(id="right", initial="events"):
                with TabPane("[3] Events", id="events"):
                    yield DataTable(id="events-table", cursor_type="row")
                with TabPane("[4] Inspector", id="inspector"):
                    yield DataTable(id="inspector-table", cursor_type="row")
                with TabPane("[6] Breakers", id="breakers"):
                    yield DataTable(id="breakers-table", cursor_type="row")

    def on_mount(self) -> None:
        for name, columns in COLUMNS.items():
            self.query_one(f"#{name}-table", DataTable).add_columns(*columns)
        self.query_one("#events-table", DataTable).focus()  # cli.md §3: focus starts on [3] Events
        self.redraw()
        self.set_interval(REDRAW_SECONDS, self._redraw_if_dirty)
        self.set_interval(1.0, self._mark_dirty)  # relative and elapsed times keep moving
        self.run_worker(self._follow_stream(), name="stream", exclusive=False)
        self.run_worker(self._poll_health(), name="health")
        self.run_worker(self._poll_schedules(), name="schedules")
        self.run_worker(self._poll_jobs(), name="jobs")
        self.run_worker(self._load_skills(), name="skills")

    async def on_unmount(self) -> None:
        await self.feed.aclose()

    # --- workers -----------------------------------------------------------------------------

    async def _follow_stream(self) -> None:
        while True:
            try:
                async for frame in self.feed.events(self.model.last_event_id):
                    if self.model.apply(frame):
                        self._dirty = True
                        if frame.type == "config.reloaded":
                            self.run_worker(self._load_skills(), name="skills")
            except ScopeMissing as exc:
                self.model.set_forbidden("events", exc.scope)
            except FeedError:
                pass  # the header says DISCONNECTED; we retry below, resuming from the last id
            self.model.set_disconnected()
            self._dirty = True
            await asyncio.sleep(RETRY_SECONDS)
            # The header shows /healthz again as soon as we reconnect, not at the next 5 s poll.
            await self._check_health()

    async def _check_health(self) -> None:
        try:
            self.model.set_health(await self.feed.health())
        except FeedError:
            self.model.set_health(None)
        self._dirty = True

    async def _poll_health(self) -> None:
        while True:
            await self._check_health()
            await asyncio.sleep(HEALTH_SECONDS if self.model.connected else RETRY_SECONDS)

    async def _poll_schedules(self) -> None:
        while True:
            asked_at = self.model.applied
            try:
                self.model.set_schedules(await self.feed.schedules(), asked_at)
                wait = SCHEDULES_SECONDS
            except ScopeMissing as exc:
                self.model.set_forbidden("scheduler", exc.scope)
                self.model.set_forbidden("breakers", exc.scope)
                wait = SCHEDULES_SECONDS
            except FeedError:
                wait = RETRY_SECONDS  # not reached yet: try again soon rather than in a minute
            self._dirty = True
            await asyncio.sleep(wait)

    async def _poll_jobs(self) -> None:
        while True:
            try:
                self.model.set_running(await self.feed.running_jobs())
                self.model.set_queue(await self.feed.queue())
            except ScopeMissing as exc:
                self.model.set_forbidden("jobs", exc.scope)
            except FeedError:
                pass  # the header says DISCONNECTED; the next poll tries again
            self._dirty = True
            await asyncio.sleep(JOBS_SECONDS)

    async def _load_skills(self) -> None:
        while True:
            try:
                self.model.set_skills(await self.feed.skills())
            except ScopeMissing as exc:
                self.model.set_forbidden("pipelines", exc.scope)
            except FeedError:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._dirty = True
            return

    async def _inspect(self, job_id: str) -> None:
        try:
            self._inspected, self._inspect_error = await self.feed.job_tree(job_id), None
        except FeedError as exc:
            self._inspected, self._inspect_error = [], str(exc)
        self._dirty = True

    # --- drawing -----------------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        # Not while closing: textual removes the screens' widgets before it stops the app's timers.
        if self._dirty and self.is_running:
            self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        m = self.model
        self.query_one("#header", Static).update("\n".join(m.header_lines()))
        now = self.clock()
        self._fill("pipelines", m.pipeline_rows(now))
        self._fill("scheduler", m.scheduler_rows())
        self.query_one("#jobs-summary", Static).update(m.queue_line())
        self._fill("jobs", m.job_rows(now), keys=m.job_ids())
        self._fill("breakers", m.breaker_rows(now), keys=[b.job_id or "" for b in m.open_breakers()])
        events = m.event_rows()
        self._fill("events", [(r.time, r.type, r.plugin, r.job, r.summary) for r in events],
                   keys=[r.job_id or "" for r in events])
        tree = [(str(n.get("job_id", ""))[:8], str(n.get("plugin", "")), str(n.get("command", "")),
                 str(n.get("status", "")), str(n.get("step_id") or "-")) for n in self._inspected]
        if self._inspect_error:
            tree = [(self._inspect_error, "", "", "", "")]
        self._fill("inspector", tree)

    def _fill(self, name: str, rows: list[tuple[str, ...]], keys: list[str] | None = None) -> None:
        table = self.query_one(f"#{name}-table", DataTable)
        if name in self.model.forbidden:
            rows = [(f"insufficient scope ({self.model.forbidden[name]} needed)",) + ("",) * (len(COLUMNS[name]) - 1)]
            keys = None
        cursor = table.cursor_row
        table.clear()
        for i, row in enumerate(rows):
            # Keys must be unique; the job id rides in the key after the row's index.
            table.add_row(*row, key=f"{i}:{keys[i]}" if keys else str(i))
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)

    # --- actions -----------------------------------------------------------------------------

    def action_switch_column(self) -> None:
        right = self.query_one("#right", TabbedContent)
        in_right = self.focused is not None and right in self.focused.ancestors
        column = self.query_one("#left" if in_right else "#right", TabbedContent)
        self.query_one(f"#{column.active}-table", DataTable).focus()

    def action_tab(self, key: str) -> None:
        column, pane = TABS[key]
        self.query_one(f"#{column}", TabbedContent).active = pane
        self.query_one(f"#{pane}-table", DataTable).focus()

    def action_cursor(self, direction: str) -> None:
        if isinstance(self.focused, DataTable):
            if direction == "down":
                self.focused.action_cursor_down()
            else:
                self.focused.action_cursor_up()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        table_id = message.data_table.id
        job_id: str | None = None
        if table_id in ("events-table", "jobs-table", "breakers-table"):
            job_id = str(message.row_key.value).partition(":")[2] or None
        elif table_id == "pipelines-table":
            name = str(message.data_table.get_row(message.row_key)[0])
            job_id = self.model.pipeline_job(name)
        if job_id is None:
            return
        self.action_tab("4")
        self.run_worker(self._inspect(job_id), name="inspect", exclusive=True, group="inspect")
