"""Progress bars on stderr for long jobs: `system rebuild`, projection catch-up in `system start`.

cli.md §1: a bar appears only when stderr is a TTY and ``--json`` is absent; stdout never
carries one, so a piped or ``--json`` run prints exactly what it would without a terminal.
``rich`` is imported only when a bar is actually drawn. Where no bar may be drawn, the long
replays (`system rebuild`, `system selfcheck`) print a plain line on stderr every
``PLAIN_EVERY_S`` seconds instead (``progress_lines``), so a log or a CI job shows they move.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class ProgressBar:
    """A ``(done, total)`` callback drawing one bar; ``close()`` (or leaving the ``with``) ends it.

    The bar is started by the first report, not on construction, so a step with nothing to do
    (projections already caught up) draws nothing. It finishes by itself when ``done`` reaches
    ``total``; close() finishes it otherwise (an error midway), which also gives the cursor back.
    Reports may come from a worker thread (the event log opens in one), hence the lock.
    """

    def __init__(self, label: str, unit: str = "events") -> None:
        self.label = label
        self.unit = unit
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._finished = False

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            if self._finished:
                return
            if self._progress is None:
                self._start(done, total)
            else:
                assert self._task is not None
                self._progress.update(self._task, completed=done, total=max(total, 1))
                self._progress.refresh()
            if done >= total:
                self._stop()

    def _start(self, done: int, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class RateColumn(ProgressColumn):
            """Events per second: with the ETA, what tells an operator a long log is moving."""

            def render(self, task: Task) -> Text:
                return Text("" if task.speed is None else f"{task.speed:,.0f}/s")

        # auto_refresh off: no refresh thread; every report redraws, and reports come once a chunk.
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
            TaskProgressColumn(), RateColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr),
            auto_refresh=False,
        )
        # The task has its numbers before start() draws it, so the first frame is not an empty pulse.
        self._task = self._progress.add_task(self.label, total=max(total, 1), completed=done)
        self._progress.start()

    def _stop(self) -> None:
        self._finished = True
        if self._progress is not None:
            self._progress.stop()

    def close(self) -> None:
        with self._lock:
            if not self._finished:
                self._stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


PLAIN_EVERY_S = 10.0


class PlainProgress:
    """A ``(done, total)`` callback printing ``<label>: <done>/<total> <unit> (<pct>%), <rate>/s,
    ETA <s>s`` on stderr at most once every ``every`` seconds: nothing for a short run."""

    def __init__(self, label: str, unit: str = "events", every: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.unit = unit
        self.every = every
        self._clock = clock
        self._begun = clock()
        self._last = self._begun
        self._first_done: int | None = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if self._first_done is None or done < self._done:
            # The rate counts from the first report of a pass (selfcheck runs two: chain, replay).
            self._first_done, self._begun, self._done = done, now, done
            return
        self._done = done
        if now - self._last < self.every:
            return
        self._last = now
        rate = (done - self._first_done) / max(now - self._begun, 1e-9)
        eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
        pct = 100 * done / max(total, 1)
        print(f"{self.label}: {done}/{total} {self.unit} ({pct:.0f}%), {rate:,.0f}/s, ETA {eta}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to give back (the bar's interface)."""


def progress_lines(label: str, *, json: bool = False, unit: str = "events") -> ProgressBar | PlainProgress:
    """A bar where cli.md §1 allows one, else periodic plain lines on stderr (never stdout)."""
    return progress_bar(label, json=json, unit=unit) or PlainProgress(label, unit)


def progress_bar(label: str, *, json: bool = False, unit: str = "events") -> ProgressBar | None:
    """A bar for ``label`` when cli.md §1 allows one (stderr is a TTY, no ``--json``), else None."""
    if json or not sys.stderr.isatty():
        return None
    return ProgressBar(label, unit)
