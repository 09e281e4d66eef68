"""Runs the registered projections: catch-up and rebuild at open, then apply per event.

The runner implements the ``ProjectionApplier`` protocol of ``ductile.events.log``. Each
projection's checkpoint (``projections`` row) moves in the same transaction as its tables.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ductile.events.record import Recorded, read_head, read_rows
from ductile.events.types import EventBase
from ductile.projections.fold_worker import WORKER_MIN_EVENTS, detach_scratch, fold_log_split
from ductile.projections.projection import Handler, Projection

CATCH_UP_CHUNK = 5000

Progress = Callable[[int, int], None]


class UnknownProjection(ValueError):
    pass


@dataclass(frozen=True)
class RebuildReport:
    name: str
    version: int
    events_applied: int
    seconds: float  # in this projection's handlers; reading the log and committing are shared


class ProjectionRunner:
    def __init__(self, projections: Sequence[Projection]) -> None:
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate projection names: {names}")
        self.projections = list(projections)
        self._dispatch: dict[type[EventBase], list[Handler]] = {}
        for p in self.projections:
            for et, fns in p.handlers.items():
                self._dispatch.setdefault(et, []).extend(fns)
        self.last_reports: list[RebuildReport] = []
        # The log size from which a rebuild folds some projections in a second process; a test
        # lowers it to hold the two-process fold to the one-process one on small logs.
        self.worker_min_events = WORKER_MIN_EVENTS
        self._names = tuple(p.name for p in self.projections)
        marks = ",".join("?" * len(self._names))
        self._checkpoint_sql = f"UPDATE projections SET position = ? WHERE name IN ({marks}) AND position < ?"

    def by_name(self, name: str) -> Projection:
        for p in self.projections:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.projections)
        raise UnknownProjection(f'unknown projection "{name}" (known: {known})')

    # --- ProjectionApplier ---------------------------------------------------------------------

    def apply(self, cur: sqlite3.Cursor, record: Recorded) -> None:
        for fn in self._dispatch.get(type(record.event), ()):
            fn(cur, record.event, record)

    def checkpoint(self, cur: sqlite3.Cursor, position: int) -> None:
        # Only the projections this runner applies; another runner's rows must stay behind.
        cur.execute(self._checkpoint_sql, (position, *self._names, position))

    def prepare(self, conn: sqlite3.Connection, progress: Progress | None = None) -> None:
        """Create missing tables, rebuild projections whose version changed, catch up the rest."""
        stale: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.cursor()
            for p in self.projections:
                row = cur.execute("SELECT version FROM projections WHERE name = ?", (p.name,)).fetchone()
                if row is None or row[0] != p.version:
                    stale.append(p.name)
                else:
                    p.create(cur)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # New or reshaped: the fast fold from position 0 (it also creates a new DB's tables).
        rebuilt = {r.name: r for r in self.rebuild(conn, stale, progress)} if stale else {}
        caught_up = self.catch_up(conn, self.projections, progress)
        self.last_reports = [rebuilt.get(r.name, r) for r in caught_up]

    # --- catch-up and rebuild ----------------------------------------------------------------

    def catch_up(
        self, conn: sqlite3.Connection, projections: Iterable[Projection], progress: Progress | None = None
    ) -> list[RebuildReport]:
        projections = list(projections)
        checkpoints = {
            name: pos
            for name, pos in conn.execute("SELECT name, position FROM projections").fetchall()
        }
        head = read_head(conn)
        behind = [p for p in projections if checkpoints.get(p.name, 0) < head]
        reports: list[RebuildReport] = []
        if not behind:
            self.last_reports = [RebuildReport(p.name, p.version, 0, 0.0) for p in projections]
            return self.last_reports
        start = min(checkpoints.get(p.name, 0) for p in behind)
        applied = {p.name: 0 for p in behind}
        spent_ns = {p.name: 0 for p in behind}
        total = head - start
        position = start
        while position < head:
            records = read_rows(conn, position, CATCH_UP_CHUNK)
            if not records:
                break
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.cursor()
                for rec in records:
                    for p in behind:
                        if rec.position <= checkpoints.get(p.name, 0):
                            continue
                        fns = p.handlers.get(type(rec.event))
                        if fns:
                            # The projections share one pass over the log, so each one's time is
                            # what its own handlers took.
                            begun = time.perf_counter_ns()
                            for fn in fns:
                                fn(cur, rec.event, rec)
                            spent_ns[p.name] += time.perf_counter_ns() - begun
                            applied[p.name] += 1
                last = records[-1].position
                for p in behind:
                    cur.execute(
                        "UPDATE projections SET position = ? WHERE name = ? AND position < ?",
                        (last, p.name, last),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            position = records[-1].position
            if progress is not None:
                progress(position - start, total)
        reports = [
            RebuildReport(p.name, p.version, applied.get(p.name, 0), spent_ns.get(p.name, 0) / 1e9) for p in projections
        ]
        self.last_reports = reports
        return reports

    def rebuild(
        self, conn: sqlite3.Connection, names: Sequence[str] | None = None, progress: Progress | None = None
    ) -> list[RebuildReport]:
        """Drop the chosen projections (default all) and replay the whole log into them.

        The fast fold (``fold.py``): one transaction, the intermediate states of every row in the
        page cache, secondary indexes built after, the checkpoints set to the head at the end; an
        interrupted rebuild leaves the projections as they were. On a large SQLite log some
        projections fold in a second process (``fold_worker.py``; ``worker_min_events``). Each
        report's ``seconds`` is its own handlers' time plus its index builds (and, for a worker's
        projection, the copy of its tables).
        """
        chosen = [self.by_name(n) for n in names] if names else list(self.projections)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                folded = fold_log_split(conn, chosen, progress=progress, min_events=self.worker_min_events)
                conn.executemany(
                    "INSERT INTO main.projections(name, version, position) VALUES (?, ?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET version = excluded.version, position = excluded.position",
                    [(p.name, p.version, folded.position) for p in chosen],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            detach_scratch(conn)  # SQLite detaches only outside a transaction
        reports = [RebuildReport(p.name, p.version, folded.applied[p.name], folded.spent_ns[p.name] / 1e9)
                   for p in chosen]
        self.last_reports = reports
        return reports
