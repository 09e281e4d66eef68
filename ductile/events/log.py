"""The event log: one append-only table, one writer thread, group commit.

Callers submit *units of work*: a function that runs inside the writer's transaction, reads what
it needs through ``WriteTx`` (the projections it reads are current, including earlier units of
the same batch), and appends events. The writer drains everything queued and runs it in one write
transaction (begun by the store: ``BEGIN IMMEDIATE`` on SQLite), applying the projections as each
event is appended, and only then resolves the callers' futures: a change is acknowledged after
its commit returned.

A unit that raises is refused alone: its caller gets the exception, the other units commit. The
units of a batch first run with no savepoint of their own (a ``SAVEPOINT`` and a ``RELEASE`` per
unit were two of an enqueue's seven statements); when one raises, the whole transaction is rolled
back and the batch runs again, each unit in its own ``SAVEPOINT``. So **a unit may run more than
once before its commit**, the earlier runs rolled back: its effects belong in the transaction
(what it appends and returns), never in memory it changes on the way.

Other processes append through this same class; the store's write lock serialises them and the
positions and chain are computed inside each transaction from the current head. What differs
between storage engines (SQLite, PostgreSQL) is behind ``EventStore`` (store.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from ductile.events import codec

# The synchronous reads live in record.py (no asyncio for the CLI and the fold worker); the async
# ones below wrap them.
from ductile.events.record import (
    GENESIS_CHAIN,
    HEAD_SQL,
    SELECT_COLUMNS,
    Recorded,
    chain_hash,
    from_row,
    read_head,
    read_rows,
    rows_sql,
)
from ductile.events.sqlite_store import SqliteStore
from ductile.events.store import FOLLOW_POLL_SECONDS, UNIT_SAVEPOINT, AsyncReader, EventStore, log_line
from ductile.events.timefmt import now_ns
from ductile.events.types import SCHEMAS, EventBase

T = TypeVar("T")

ANY = "any"
NO_STREAM = "no_stream"
Expected = int | str  # ANY, NO_STREAM or an exact version (>= 1)

MAX_BATCH = 2000


class ConcurrencyError(Exception):
    """The stream was not at the version the command expected."""

    def __init__(self, stream: str, expected: Expected, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class LogClosed(RuntimeError):
    pass


class _RunAlone(Exception):
    """A unit met a conflict it can report only inside a savepoint of its own (``WriteTx.isolated``):
    the writer runs the batch again unit by unit, where it becomes the unit's ``ConcurrencyError``."""


class ProjectionApplier(Protocol):
    """What the log needs from the projection runner (which lives a layer above)."""

    def prepare(self, conn: sqlite3.Connection, progress: Callable[[int, int], None] | None) -> None: ...

    def apply(self, cur: sqlite3.Cursor, record: Recorded) -> None: ...

    def checkpoint(self, cur: sqlite3.Cursor, position: int) -> None: ...


class WriteTx:
    """The view a unit of work has of the log while it runs on the writer thread."""

    def __init__(self, log: EventLog, conn: sqlite3.Connection, now: int, isolated: bool = True) -> None:
        self._log = log
        # In a savepoint of its own (the writer's second pass over a batch whose unit raised).
        self.isolated = isolated
        self.conn = conn
        self.cur = conn.cursor()
        self.now = now
        self.head_position = 0
        self.head_chain = GENESIS_CHAIN
        self.recorded: list[Recorded] = []
        self._versions: dict[str, int] = {}

    def stream_version(self, stream: str) -> int:
        cached = self._versions.get(stream)
        if cached is not None:
            return cached
        row = self.cur.execute(
            "SELECT MAX(version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()
        version = row[0] or 0
        self._versions[stream] = version
        return version

    def known_version(self, stream: str, version: int) -> None:
        """Tell the transaction a stream's version read from a projection kept in this same
        transaction, sparing the ``MAX(version)`` lookup on the hot path."""
        self._versions.setdefault(stream, version)

    def append(
        self,
        stream: str,
        events: Sequence[EventBase],
        expected: Expected = ANY,
        event_ids: Sequence[bytes] | None = None,
    ) -> list[Recorded]:
        if not events:
            return []
        if event_ids is not None:
            if len(event_ids) != len(events):
                raise ValueError("event_ids must match events one to one")
            existing = self._existing(event_ids)
            if existing:
                # A retried append of the same events is a no-op that returns what is stored.
                return existing
        if expected == NO_STREAM and stream not in self._versions:
            # New streams are the hot path (every enqueue): UNIQUE(stream, version) refuses an
            # existing stream at insert time, so the MAX(version) lookup is not needed.
            current = 0
        else:
            current = self.stream_version(stream)
            if expected == NO_STREAM:
                if current != 0:
                    raise ConcurrencyError(stream, expected, current)
            elif expected != ANY and current != expected:
                raise ConcurrencyError(stream, expected, current)
        out: list[Recorded] = []
        recorded_at = self.now
        projections = self._log.projections
        for i, event in enumerate(events):
            type_ = type(event).__name__
            data = codec.encode(event)
            eid = event_ids[i] if event_ids is not None else os.urandom(16)  # a random (v4-style) 128-bit id
            position = self.head_position + 1
            version = current + 1
            chain = chain_hash(self.head_chain, position, eid, stream, version, type_, SCHEMAS[type_], recorded_at, data)
            try:
                self.cur.execute(
                    "INSERT INTO events(position, event_id, stream, version, type, schema, recorded_at, data, chain)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (position, eid, stream, version, type_, SCHEMAS[type_], recorded_at, data, chain),
                )
            except Exception as exc:
                store = self._log.store
                if not store.is_conflict(exc):
                    raise
                if expected == NO_STREAM and version == 1:
                    if not self.isolated:
                        # No savepoint of its own to undo the failed insert to (PostgreSQL's
                        # transaction is spoiled by it): the batch runs again unit by unit.
                        raise _RunAlone(stream) from exc
                    store.recover_failed_statement(self.conn)  # to read the stream's version
                    raise ConcurrencyError(stream, expected, self._actual_version(stream)) from None
                raise
            rec = Recorded(
                position=position,
                event_id=eid,
                stream=stream,
                version=version,
                type=type_,
                schema=SCHEMAS[type_],
                recorded_at=recorded_at,
                event=event,
            )
            self.head_position = position
            self.head_chain = chain
            current = version
            if projections is not None:
                projections.apply(self.cur, rec)
            out.append(rec)
        self._versions[stream] = current
        self.recorded.extend(out)
        return out

    def _actual_version(self, stream: str) -> int:
        row = self.cur.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        return row[0] or 0

    def _existing(self, event_ids: Sequence[bytes]) -> list[Recorded]:
        marks = ",".join("?" * len(event_ids))
        rows = self.cur.execute(
            f"SELECT {SELECT_COLUMNS} FROM events WHERE event_id IN ({marks}) ORDER BY position",
            tuple(event_ids),
        ).fetchall()
        return [from_row(r) for r in rows]

    def _mark(self) -> tuple[int, bytes, int]:
        return self.head_position, self.head_chain, len(self.recorded)

    def _rollback_to(self, mark: tuple[int, bytes, int]) -> None:
        self.head_position, self.head_chain, n = mark
        del self.recorded[n:]
        self._versions.clear()


@dataclass(slots=True)
class _Request:
    work: Callable[[WriteTx], Any]
    loop: asyncio.AbstractEventLoop | None = None
    afuture: asyncio.Future[Any] | None = None
    cfuture: concurrent.futures.Future[Any] | None = None


@dataclass(slots=True)
class _Outcome:
    request: _Request
    result: Any = None
    error: BaseException | None = None


@dataclass
class LogStats:
    batches: int = 0
    units: int = 0
    events: int = 0


class EventLog:
    """The durable log. ``open`` it once per process; append through ``submit``/``append``.

    ``where`` is an ``EventStore`` or, for SQLite, the state DB's path."""

    def __init__(
        self,
        where: EventStore | str | Path,
        durability: str = "full",
        projections: ProjectionApplier | None = None,
    ) -> None:
        if durability not in ("full", "normal"):
            raise ValueError('durability must be "full" or "normal"')
        self.store: EventStore = SqliteStore(Path(where)) if isinstance(where, (str, Path)) else where
        self.durability = durability
        self.projections = projections
        self.stats = LogStats()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._head = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # One long-lived event, pulsed (set, then cleared) on each in-process commit: the
        # followers already waiting wake, and _commits tells one that was busy reading that it
        # missed a pulse. No allocation per commit.
        self._changed: asyncio.Event | None = None
        self._commits = 0
        self._commit_listeners: list[Callable[[list[Recorded]], None]] = []
        self._unwritable: str | None = None

    def __repr__(self) -> str:
        return f"EventLog({self.store!r}, durability={self.durability!r})"

    @property
    def path(self) -> Path:
        """The SQLite state DB file; a PostgreSQL store has none (the file-only callers refuse it
        before they get here)."""
        file = self.store.file
        if file is None:
            raise TypeError(f"the event log at {self.store.location} is not a file")
        return file

    # --- lifecycle ---------------------------------------------------------------------------

    def open_sync(self, progress: Callable[[int, int], None] | None = None) -> EventLog:
        """Create or open the log, prepare projections (catch-up/rebuild) and start the writer."""
        conn = self.store.open_writer(self.durability)
        try:
            if self.projections is not None:
                self.projections.prepare(conn, progress)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            self.store.forget_unwritten()
            raise
        row = conn.execute("SELECT MAX(position) FROM events").fetchone()
        self._head = row[0] or 0
        self._conn = conn
        self._thread = threading.Thread(target=self._run, name="ductile-writer", daemon=True)
        self._thread.start()
        return self

    async def open(self, progress: Callable[[int, int], None] | None = None) -> EventLog:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        await asyncio.to_thread(self.open_sync, progress)
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._fail_queued()
        if self._conn is not None:
            self.store.close_writer(self._conn)
            self._conn = None

    def _fail_queued(self) -> None:
        # A submit that raced close() may have queued behind the stop marker: never leave it waiting.
        leftovers: list[_Outcome] = []
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                break
            if req is not None:
                leftovers.append(_Outcome(req, error=LogClosed("event log is closed")))
        if leftovers:
            self._deliver(leftovers, [])

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def head(self) -> int:
        """Position of the last event this process saw committed."""
        return self._head

    @property
    def unwritable(self) -> str | None:
        """Why the last write failed for a storage reason (``/healthz`` degraded), or None once a
        commit succeeds again."""
        return self._unwritable

    def committed_elsewhere(self) -> None:
        """Another process appended (a PostgreSQL notification, on the event loop): wake the
        followers now rather than at their next poll."""
        self._commits += 1
        if self._changed is not None:
            self._changed.set()
            self._changed.clear()

    @property
    def writer_connection(self) -> sqlite3.Connection | None:
        """The writer's open connection, for facts of its session (PostgreSQL's backend pid)."""
        return self._conn

    def on_commit(self, listener: Callable[[list[Recorded]], None]) -> None:
        """Call ``listener(records)`` on the event loop after each commit (in-process only)."""
        self._commit_listeners.append(listener)

    # --- writing -----------------------------------------------------------------------------

    async def submit(self, work: Callable[[WriteTx], T]) -> T:
        """Run ``work`` in the writer's transaction; its result once committed. ``work`` may run
        more than once (the module's docstring says when): it keeps its effects to ``tx``."""
        if self._closed:
            raise LogClosed("event log is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Request(work=work, loop=loop, afuture=fut))
        return await fut

    def submit_sync(self, work: Callable[[WriteTx], T]) -> T:
        if self._closed:
            raise LogClosed("event log is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Request(work=work, cfuture=fut))
        return fut.result()

    async def append(
        self,
        stream: str,
        events: Sequence[EventBase],
        expected: Expected = ANY,
        event_ids: Sequence[bytes] | None = None,
    ) -> list[Recorded]:
        return await self.submit(lambda tx: tx.append(stream, events, expected, event_ids))

    def append_sync(
        self,
        stream: str,
        events: Sequence[EventBase],
        expected: Expected = ANY,
        event_ids: Sequence[bytes] | None = None,
    ) -> list[Recorded]:
        return self.submit_sync(lambda tx: tx.append(stream, events, expected, event_ids))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            assert self._conn is not None  # the store may have replaced it after a storage error
            self._run_batch(self._conn, batch)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> None:
        try:
            tx, outcomes = self._run_together(conn, batch)
            if tx is None and not outcomes:
                # A unit raised: its work and its neighbours' were rolled back with the whole
                # transaction; each unit runs again in its own savepoint, so only it is refused.
                tx, outcomes = self._run_one_by_one(conn, batch)
            if tx is not None:
                if tx.recorded and self.projections is not None:
                    self.projections.checkpoint(tx.cur, tx.head_position)
                if tx.recorded:
                    self.store.announce_append(conn)  # other nodes' followers (a no-op on SQLite)
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except Exception as rollback_exc:  # the batch's own error is what callers get
                    log_line(logging.DEBUG, "rollback after a failed batch failed", rollback_exc)
            if self.store.is_storage_error(exc):
                self._storage_failed(exc)
                self._conn = self.store.reopen_writer(conn, self.durability)
            failed = [_Outcome(req, error=exc) for req in batch]
            self._deliver(failed, [])
            return
        self.stats.batches += 1
        self.stats.units += len(batch)
        if tx is None:  # a batch of one unit that raised: rolled back, nothing to commit
            self._deliver(outcomes, [])
            return
        if self._unwritable is not None:
            self._unwritable = None
            log_line(logging.INFO, "event log writable again")
        self.stats.events += len(tx.recorded)
        self._deliver(outcomes, tx.recorded)

    def _begin(self, conn: sqlite3.Connection, isolated: bool) -> WriteTx:
        tx = WriteTx(self, conn, now_ns(), isolated)
        self.store.begin_write(conn)
        row = tx.cur.execute("SELECT position, chain FROM events ORDER BY position DESC LIMIT 1").fetchone()
        if row is not None:
            tx.head_position, tx.head_chain = row
        return tx

    def _run_together(self, conn: sqlite3.Connection, batch: list[_Request]) -> tuple[WriteTx | None, list[_Outcome]]:
        """Every unit of the batch in the transaction with no savepoint of its own: the common case,
        where nothing raises, without a SAVEPOINT and a RELEASE per unit (two statements of an
        enqueue's seven). None, the transaction rolled back, when a unit raised: with the unit's
        outcome when it was the batch's only one (running it again would only raise again)."""
        tx = self._begin(conn, isolated=False)
        outcomes: list[_Outcome] = []
        for req in batch:
            try:
                result = req.work(tx)
            except BaseException as exc:
                if self.store.is_storage_error(exc):
                    raise  # the storage, not this unit, failed: the whole batch fails alike
                conn.execute("ROLLBACK")
                alone = len(batch) == 1 and not isinstance(exc, _RunAlone)
                return None, [_Outcome(req, error=exc)] if alone else []
            outcomes.append(_Outcome(req, result=result))
        return tx, outcomes

    def _run_one_by_one(self, conn: sqlite3.Connection, batch: list[_Request]) -> tuple[WriteTx, list[_Outcome]]:
        """Each unit in its own savepoint: one that raises is rolled back alone and its caller gets
        the exception; the others commit."""
        tx = self._begin(conn, isolated=True)
        outcomes: list[_Outcome] = []
        for req in batch:
            mark = tx._mark()
            conn.execute(f"SAVEPOINT {UNIT_SAVEPOINT}")
            try:
                result = req.work(tx)
            except BaseException as exc:
                if self.store.is_storage_error(exc):
                    raise
                conn.execute(f"ROLLBACK TO {UNIT_SAVEPOINT}")
                conn.execute(f"RELEASE {UNIT_SAVEPOINT}")
                tx._rollback_to(mark)
                outcomes.append(_Outcome(req, error=exc))
            else:
                conn.execute(f"RELEASE {UNIT_SAVEPOINT}")
                outcomes.append(_Outcome(req, result=result))
        return tx, outcomes

    def _storage_failed(self, exc: BaseException) -> None:
        """One WARN with the traceback when the log stops being writable; each caller is told too."""
        if self._unwritable is None:
            log_line(logging.WARNING, "event log not writable", exc=exc)
        self._unwritable = str(exc)

    def _deliver(self, outcomes: list[_Outcome], recorded: list[Recorded]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for out in outcomes:
            req = out.request
            if req.cfuture is not None:
                if out.error is not None:
                    req.cfuture.set_exception(out.error)
                else:
                    req.cfuture.set_result(out.result)
            elif req.loop is not None:
                by_loop.setdefault(req.loop, []).append(out)
        if recorded and self._loop is not None and self._loop not in by_loop:
            by_loop[self._loop] = []
        for loop, outs in by_loop.items():
            # One thread hop per loop per batch, not one per future. A closed loop has nobody
            # waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._resolve, outs, recorded if loop is self._loop else [])

    def _resolve(self, outs: list[_Outcome], recorded: list[Recorded]) -> None:
        for out in outs:
            fut = out.request.afuture
            if fut is None or fut.done():
                continue
            if out.error is not None:
                fut.set_exception(out.error)
            else:
                fut.set_result(out.result)
        if recorded:
            self._head = max(self._head, recorded[-1].position)
            for listener in self._commit_listeners:
                listener(recorded)
            self._commits += 1
            if self._changed is not None:
                self._changed.set()
                self._changed.clear()

    # --- reading -----------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection (never blocks the writer, WAL snapshot per statement)."""
        return self.store.reader()

    async def follow(
        self, from_position: int = 0, batch: int = 500, poll: float = FOLLOW_POLL_SECONDS
    ) -> AsyncIterator[Recorded]:
        """Yield every event after ``from_position``, then wait for new commits, forever.

        In-process commits wake followers at once; appends by other processes are seen within
        ``poll`` seconds.
        """
        # aiosqlite, not a worker-thread read: a cancelled follower's close is queued behind the
        # statement still running on the connection's own thread, never run under it (SIGSEGV).
        reader: AsyncReader = await self.store.connect_async()
        position = from_position
        try:
            while True:
                commits = self._commits
                rows = await fetch_rows(reader, position, batch)
                for rec in rows:
                    position = rec.position
                    yield rec
                if len(rows) == batch:
                    continue
                if self._changed is None:
                    await asyncio.sleep(poll)
                elif self._commits == commits:  # else a commit landed while we read: read again
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    # that lands as the wait completes, and the follower would then never stop.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(poll):
                            await self._changed.wait()
        finally:
            await reader.close()


async def fetch_head(conn: AsyncReader) -> int:
    """``read_head`` on an async connection."""
    rows = list(await conn.execute_fetchall(HEAD_SQL))
    head: int = rows[0][0]
    return head


async def fetch_rows(conn: AsyncReader, from_position: int = 0, limit: int | None = None) -> list[Recorded]:
    """``read_rows`` on an async connection."""
    sql, params = rows_sql(from_position, limit)
    return [from_row(r) for r in await conn.execute_fetchall(sql, params)]


def read_stream(conn: sqlite3.Connection, stream: str) -> list[Recorded]:
    rows = conn.execute(
        f"SELECT {SELECT_COLUMNS} FROM events WHERE stream = ? ORDER BY version", (stream,)
    ).fetchall()
    return [from_row(r) for r in rows]


def iter_rows(conn: sqlite3.Connection, from_position: int = 0, chunk: int = 5000) -> Iterable[Recorded]:
    position = from_position
    while True:
        rows = read_rows(conn, position, chunk)
        if not rows:
            return
        yield from rows
        position = rows[-1].position


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    head: int
    problem: str | None = None
    position: int | None = None


def verify_chain(conn: sqlite3.Connection, progress: Callable[[int, int], None] | None = None) -> ChainReport:
    """Recompute the hash chain and check positions are gap-free from 1; ``progress(done, head)``
    is told every ``_CHAIN_PROGRESS_EVERY`` events."""
    head = read_head(conn) if progress is not None else 0
    previous = GENESIS_CHAIN
    expected_position = 1
    count = 0
    for row in conn.execute(
        "SELECT position, event_id, stream, version, type, schema, recorded_at, data, chain FROM events ORDER BY position"
    ):
        position, eid, stream, version, type_, schema, recorded_at, data, chain = row
        if position != expected_position:
            return ChainReport(False, count, position, f"gap: expected position {expected_position}, found {position}", position)
        if chain_hash(previous, position, eid, stream, version, type_, schema, recorded_at, data) != chain:
            return ChainReport(False, count, position, f"chain broken at position {position}", position)
        previous = chain
        expected_position += 1
        count += 1
        if progress is not None and count % _CHAIN_PROGRESS_EVERY == 0:
            progress(count, head)
    return ChainReport(True, count, expected_position - 1)


_CHAIN_PROGRESS_EVERY = 5000


class BrokenStream(msgspec.Struct, frozen=True):
    """A stream whose versions are not exactly 1..count."""

    stream: str
    events: int
    first: int
    last: int


def first_broken_stream(conn: sqlite3.Connection) -> BrokenStream | None:
    """The first stream whose versions have a gap or do not start at 1, else None."""
    row = conn.execute(
        "SELECT stream, COUNT(*), MIN(version), MAX(version) FROM events GROUP BY stream"
        " HAVING MIN(version) != 1 OR MAX(version) != COUNT(*) ORDER BY MIN(position) LIMIT 1"
    ).fetchone()
    return None if row is None else BrokenStream(*row)


def newest_recorded_at(conn: sqlite3.Connection) -> int | None:
    """The ``recorded_at`` (Unix ns) of the last event, None for an empty log."""
    row = conn.execute("SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1").fetchone()
    return None if row is None else int(row[0])


@contextlib.contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction: every read inside sees the same state, whatever commits meanwhile."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
