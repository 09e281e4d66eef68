"""The whole-log fold on two cores: the heaviest projection in this process, the others in a worker.

``fold.fold_log`` runs in one process, and ``bench/rebuild.py --floor`` shows that one process
writing each final row once cannot go much faster (docs/performance-history.md, "Rebuild"). The machine's
second core is the lever left: on a SQLite log of at least ``WORKER_MIN_EVENTS`` events (below it a
process costs more than it saves) ``fold_log_split`` starts ``python -m
ductile.projections.fold_worker``, which

* opens the state database read-only and folds the events up to the same ``head`` (the log is
  append-only, so ``position <= head`` is one snapshot for both processes) into the projections
  of its group, with the same ``fold_log`` (bulk folds included, secondary indexes built after),
  into a scratch SQLite file beside the state database (created 0600 by this process, a unique
  name);
* answers with a ``WorkerReport`` (per projection, the events taken and the time spent) on stdout.

Meanwhile this process folds its own group (``IN_PROCESS``: the ledger, the longest fold) into
``main`` inside the caller's transaction, reading only the events its group takes, and builds its
indexes. Then it waits for the worker, ATTACHes the scratch file, copies each of the worker's tables
into ``main`` (``INSERT … SELECT *`` into a fresh, empty table with the same DDL and indexes:
SQLite's transfer copies the b-tree records as they are, in rowid order, so the tables keep the
in-process fold's row order and rowids, and each index's entries already sorted) and removes the
file. Everything lands in the caller's one transaction: a failed or interrupted rebuild leaves the
projections as they were.

SQLite cannot DETACH a database that the open transaction has read, so the scratch stays attached
(its file already removed) until the caller's transaction has ended: the caller runs
``detach_scratch`` then.

A worker that fails (an error, a crash, a signal) fails the fold with ``FoldWorkerFailed``, whose
message carries the worker's own error; its traceback is logged once. The scratch file is removed
in every case; only a SIGKILL of this process itself can leave one behind
(``.ductile-fold-*.db`` beside the state database, safe to delete).

PostgreSQL folds in one process through the live handlers (``fold.py``): this module is SQLite's.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import msgspec

from ductile.events.record import read_head
from ductile.events.store import StoreKind, dialect_of, log_line
from ductile.projections.fold import (
    FoldResult,
    Progress,
    fold_log,
    fold_pragmas,
    qualified,
    statements,
)
from ductile.projections.projection import Projection

# Below this many events a whole-log fold takes well under a second, less than starting a Python
# process that imports the projections (0.2-0.3 s) and copying its tables back.
WORKER_MIN_EVENTS = 20_000
# The projections folded in this process; every other one goes to the worker. The ledger is the
# longest fold (bench/rebuild.py's log: ledger 1.9 s, queue 1.1 s, the rest 0.4 s); the worker also
# decodes the whole log again, and this process also copies the worker's tables back and commits,
# so the two end within half a second of each other (docs/performance-history.md, "Fourth round").
IN_PROCESS = ("ledger",)
SCRATCH_SCHEMA = "fold_scratch"
_SCRATCH_PREFIX = ".ductile-fold-"
_WORKER_MODULE = "ductile.projections.fold_worker"  # run with ``python -m``; a test points it elsewhere
_STDERR_KEPT = 2000  # characters of a crashed worker's stderr that go into the error


class WorkerRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the worker folds: the events of ``database`` up to ``head`` into ``projections``
    (by name), written to ``scratch`` (an empty file the parent created)."""

    database: str
    scratch: str
    head: int
    projections: list[str]


class WorkerReport(msgspec.Struct, frozen=True, kw_only=True):
    """The worker's answer: per projection, the events its fold took and its time (ns); or the
    error that stopped it (``"<type>: <message>"``) with its traceback."""

    applied: dict[str, int] = {}
    spent_ns: dict[str, int] = {}
    error: str | None = None
    traceback: str | None = None


class FoldWorkerFailed(RuntimeError):
    """The fold worker failed; the message carries its own error, ``detail`` its traceback (or the
    end of what it wrote on stderr), which is also logged."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


def split(projections: Sequence[Projection]) -> tuple[list[Projection], list[Projection]]:
    """``projections`` as (folded in this process, folded by the worker), each in the given order."""
    here = [p for p in projections if p.name in IN_PROCESS]
    return here, [p for p in projections if p.name not in IN_PROCESS]


def _both_groups(names: Sequence[str]) -> bool:
    """``split`` gives both groups a projection (only then is a worker worth starting), asked of
    names: ``prestart`` runs before the projections are imported."""
    return any(n in IN_PROCESS for n in names) and not all(n in IN_PROCESS for n in names)


def fold_log_split(
    conn: sqlite3.Connection,
    projections: Sequence[Projection],
    *,
    progress: Progress | None = None,
    min_events: int = WORKER_MIN_EVENTS,
) -> FoldResult:
    """``fold.fold_log(conn, projections)`` (events and tables in ``main``, inside the caller's
    write transaction), with the worker's group folded in a second process when the log is a
    SQLite file in WAL mode (a reader in another process does not block this writer) of at least
    ``min_events`` events and both groups have a projection; else wholly in this process. After
    the caller's transaction ends it must call ``detach_scratch(conn)``."""
    here, there = split(projections)
    database = _database_file(conn) if here and there else None
    if database is None:  # PostgreSQL, a private database, one group empty: as ``fold_log`` alone
        return fold_log(conn, projections, progress=progress)
    head = read_head(conn)
    if head < min_events:
        return fold_log(conn, projections, progress=progress, head=head)
    # The fold's page cache and secure_delete for the copy as well: it drops the worker's old
    # tables and writes theirs, which would otherwise zero freed pages and spill to the log early.
    with fold_pragmas(conn), _worker(database, head, there) as worker:
        result = fold_log(conn, here, progress=progress, head=head, taken_only=True)
        report = worker.wait()
        _copy_in(conn, there, worker.scratch, report, result)
    return result


def detach_scratch(conn: sqlite3.Connection) -> None:
    """DETACH the worker's scratch database if a fold attached it (its transaction must be over)."""
    if dialect_of(conn) is not StoreKind.SQLITE:  # a PostgreSQL fold never starts a worker
        return
    attached = {row[1] for row in conn.execute("PRAGMA database_list").fetchall()}
    if SCRATCH_SCHEMA in attached:
        conn.execute(f"DETACH DATABASE {SCRATCH_SCHEMA}")


def _database_file(conn: sqlite3.Connection) -> Path | None:
    """``main``'s file if the worker can read it beside this writer: SQLite, a file, WAL mode."""
    if dialect_of(conn) is not StoreKind.SQLITE:
        return None
    files = {row[1]: row[2] for row in conn.execute("PRAGMA database_list").fetchall()}
    if not files.get("main"):  # in memory or temporary: no other process can open it
        return None
    if conn.execute("PRAGMA main.journal_mode").fetchone()[0].lower() != "wal":
        return None
    return Path(files["main"])


class _Worker:
    """The running worker process and its scratch file."""

    def __init__(self, process: subprocess.Popen[bytes], scratch: Path, stderr: IO[bytes]) -> None:
        self.process = process
        self.scratch = scratch
        self.stderr = stderr

    def wait(self) -> WorkerReport:
        """The worker's report once it exited; ``FoldWorkerFailed`` if it did not succeed."""
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        code = self.process.wait()
        report: WorkerReport | None = None
        with suppress(msgspec.DecodeError):  # a crashed worker's stdout is empty or cut short
            report = msgspec.json.decode(out, type=WorkerReport)
        if code == 0 and report is not None and report.error is None:
            return report
        self.stderr.seek(0)
        stderr = self.stderr.read().decode(errors="replace").strip()
        if report is not None and report.error is not None:
            error = report.error
        else:  # it died before it could answer: its status and its last words
            error = f"killed by {_signal_name(-code)}" if code < 0 else f"exit status {code}"
            if stderr:
                error += f": {stderr.splitlines()[-1]}"
        detail = (report.traceback if report is not None and report.traceback else stderr[-_STDERR_KEPT:]) or None
        log_line(logging.ERROR, "rebuild's fold worker failed", error=error, stack=detail)
        raise FoldWorkerFailed(f"the rebuild's fold worker failed: {error}", detail)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time or unnamed signal
        return f"signal {number}"


class _Spawned:
    """A worker process started, not yet given its request, and the file that takes its stderr."""

    def __init__(self) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by ``end``)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", _WORKER_MODULE],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=_worker_env(),
            )
        except BaseException:
            self.stderr.close()
            raise

    def end(self) -> None:
        """Stop the process if it still runs, reap it, close its pipes and stderr file."""
        process = self.process
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with suppress(BrokenPipeError):
                    pipe.close()
        self.stderr.close()


# A worker ``prestart`` started ahead of the fold, for ``_worker`` to take (one per process).
_prestarted: _Spawned | None = None


def prestart(database: Path | None, names: Sequence[str] | None = None) -> None:
    """Start the worker now when a rebuild of ``names`` (default all) of ``database`` will use one,
    so its start (a Python process importing the projections, 0.2-0.3 s) runs on the other core
    while this process loads its own modules and opens the log; ``fold_log_split`` hands it its
    request. ``discard_prestarted`` ends it if nothing took it. A guess from a read-only look at
    the log: ``fold_log_split`` decides again inside its transaction, and starts its own worker if
    none was started."""
    global _prestarted
    if _prestarted is not None or database is None or not database.is_file():
        return
    if names and not _both_groups(names):
        return
    if _peek_head(database) < WORKER_MIN_EVENTS:
        return
    _prestarted = _Spawned()


def discard_prestarted() -> None:
    """End a prestarted worker that no fold took (it waits for its request: killed at once)."""
    global _prestarted
    spawned, _prestarted = _prestarted, None
    if spawned is not None:
        spawned.end()


def _peek_head(database: Path) -> int:
    try:
        conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        return int(read_head(conn))
    except (sqlite3.Error, TypeError, ValueError):  # not (yet) a log: no worker
        return 0
    finally:
        conn.close()


@contextmanager
def _worker(database: Path, head: int, projections: Sequence[Projection]) -> Iterator[_Worker]:
    """Start the worker on ``projections`` (or give the prestarted one its request); on leaving, in
    every case, it is stopped (if still running) and its scratch file removed."""
    global _prestarted
    fd, name = tempfile.mkstemp(prefix=_SCRATCH_PREFIX, suffix=".db", dir=database.parent)  # mode 0600
    os.close(fd)
    scratch = Path(name)
    request = WorkerRequest(database=str(database), scratch=name, head=head, projections=[p.name for p in projections])
    try:
        spawned, _prestarted = _prestarted, None
        if spawned is None:
            spawned = _Spawned()
        try:
            process = spawned.process
            assert process.stdin is not None
            try:
                with process.stdin:
                    process.stdin.write(msgspec.json.encode(request))
            except BrokenPipeError:
                pass  # the worker exited at once: ``wait`` reports how
            yield _Worker(process, scratch, spawned.stderr)
        finally:
            spawned.end()
    finally:
        for path in (scratch, Path(f"{scratch}-journal")):
            path.unlink(missing_ok=True)


def _worker_env() -> dict[str, str]:
    # The worker must run this very code: the directory this ``ductile`` package was imported from
    # goes first on its path (a test or a checkout may not be what the interpreter would find).
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path]) if path else root}


def _copy_in(conn: sqlite3.Connection, projections: Sequence[Projection], scratch: Path, report: WorkerReport,
             result: FoldResult) -> None:
    """Replace ``projections``' tables (and their indexes) in ``main`` by the worker's; the
    worker's counts and times (plus the copy's) go into ``result``."""
    clock = time.perf_counter_ns
    conn.execute(f"ATTACH DATABASE ? AS {SCRATCH_SCHEMA}", (scratch.resolve().as_uri() + "?mode=ro",))
    cur = conn.cursor()
    for p in projections:
        begun = clock()
        for table in p.tables:
            cur.execute(f"DROP TABLE IF EXISTS main.{table}")
        # Indexes too, before the rows: the worker built the same ones in the scratch file, and the
        # transfer below copies each index's entries as they are, already sorted, into an empty
        # index (CREATE INDEX after the rows would sort them again, here, on the critical path).
        for statement in statements(p.schema):
            cur.execute(qualified(statement, "main"))
        for table in p.tables:
            # No WHERE and no ORDER BY into an empty table of the same shape: SQLite's transfer
            # optimisation copies the records as stored, in rowid order, rowids included (the
            # worker filled its tables as the in-process fold does, so they are in its row order).
            cur.execute(f"INSERT INTO main.{table} SELECT * FROM {SCRATCH_SCHEMA}.{table}")
        result.applied[p.name] = report.applied[p.name]
        result.spent_ns[p.name] = report.spent_ns[p.name] + clock() - begun


# --- the worker process -------------------------------------------------------------------------


def fold_into_scratch(request: WorkerRequest) -> WorkerReport:
    """Fold ``request``'s projections from its database (read-only) into its scratch file."""
    from ductile.projections.registry import ALL  # here: the registry imports the runner, which imports this

    by_name = {p.name: p for p in ALL}
    projections = [by_name[name] for name in request.projections]
    conn = sqlite3.connect(request.scratch, isolation_level=None)
    try:
        # A scratch file: nothing in it outlives the rebuild, so no journal and no fsync.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("ATTACH DATABASE ? AS live", (Path(request.database).resolve().as_uri() + "?mode=ro",))
        conn.execute("BEGIN")
        folded = fold_log(conn, projections, events_schema="live", head=request.head)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return WorkerReport(applied=folded.applied, spent_ns=folded.spent_ns)


def main() -> int:
    # The projections first, then the request: a prestarted worker (``prestart``) loads them while
    # its parent is still starting; an import error is reported by ``fold_into_scratch``.
    with suppress(Exception):
        import ductile.projections.registry  # noqa: F401
    raw = sys.stdin.buffer.read()
    if not raw:  # a prestarted worker its parent did not need
        return 0
    request = msgspec.json.decode(raw, type=WorkerRequest)
    try:
        report = fold_into_scratch(request)
    except BaseException as exc:  # reported whole to the parent, which fails the rebuild with it
        report = WorkerReport(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    sys.stdout.buffer.write(msgspec.json.encode(report))
    sys.stdout.flush()
    return 0 if report.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
