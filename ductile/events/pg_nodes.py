"""Several gateway nodes on one PostgreSQL store: node leases, the scheduler's lock, wake-ups
(docs/postgresql.md, "Several nodes"). Imports psycopg: only ``ductile.runtime.cluster`` imports
this module, and only for a PostgreSQL store.

* **Leases are a table, not events.** ``ductile_nodes`` holds one row per live node, renewed every
  few seconds. Liveness is operational state, not history: heartbeat events from every node every
  few seconds would outgrow the jobs in the log (3 nodes x every 10 s is 26,000 events a day),
  and replay would gain nothing from them. Expiry is judged by the server's clock
  (``clock_timestamp()``), so nodes on hosts whose clocks disagree still agree on who expired.
  Each row carries its node's own ``lease_seconds``.
* **Reaping runs inside the log's write transaction** (``reap_expired``), so the lease check and
  the ``JobRecovered`` appends are one step: a node whose renewal lands first is not reaped, and a
  node reaped first finds its row gone at its next renewal (``NodeSession.renew`` says so).
* **One scheduler**: a session-level advisory lock held by the node session's connection. When the
  holder dies (kill -9 included) the server ends its session and releases the lock; a standby
  takes it at its next try. ``pg_locks`` names the holding session, whose ``application_name``
  names its node: every node can say who schedules.
* **Wake-ups**: every write transaction that appended NOTIFYs ``ductile_log`` just before its
  commit (``PostgresStore.announce_append``: delivered at the commit, once per batch);
  ``Listener`` LISTENs on its own connection and calls back once per notification of another
  process's commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ductile.events.pg_connections import CONNECT_TIMEOUT_SECONDS
from ductile.events.postgres_store import APPEND_CHANNEL, OPERATIONAL_TABLES, PostgresUnavailable
from ductile.events.store import log_line, mask_password

APPLICATION_PREFIX = "ductile-node:"  # + the node id: how pg_stat_activity names a node's session
# Advisory lock keys shared by every Ductile process on the database ("ducts", "ductn").
SCHEDULER_LOCK_KEY = 0x6475637473
_DDL_LOCK_KEY = 0x647563746E
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"

_NODES_TABLE = OPERATIONAL_TABLES[0]
_DDL = f"""
CREATE TABLE IF NOT EXISTS {_NODES_TABLE} (
  node TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  renewed_at DOUBLE PRECISION NOT NULL,
  lease_seconds DOUBLE PRECISION NOT NULL
);
"""
_HOLDER_SQL = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
"""
_LIVE_SQL = f"SELECT node FROM ductile_nodes WHERE renewed_at + lease_seconds >= {_NOW}"
_REAP_SQL = f"DELETE FROM ductile_nodes WHERE renewed_at + lease_seconds < {_NOW} RETURNING node"


def _connect(url: str, node: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               application_name=(APPLICATION_PREFIX + node)[:63])
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(f"cannot connect to the event store {mask_password(url)}: "
                                  f"{str(exc).strip()}") from None


class NodeSession:
    """A node's own connection to the shared store: its lease, and the scheduler's lock (held by
    this session, so the lock ends with the node). Calls are blocking (run them off the loop);
    psycopg serialises calls from several threads on one connection."""

    def __init__(self, url: str, node: str, lease_seconds: float) -> None:
        self.url, self.node, self.lease_seconds = url, node, lease_seconds
        self._conn = _connect(url, node)
        self.holds_scheduler = False

    def register(self, host: str, pid: int) -> None:
        """Create the lease table (once, whoever comes first), then take
        or renew this node's row: a restarted node keeps its id and its row."""
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
            self._conn.execute(_DDL)  # type: ignore[arg-type]  # our own constant text
            self._conn.execute(
                f"INSERT INTO ductile_nodes(node, host, pid, started_at, renewed_at, lease_seconds)"
                f" VALUES (%s, %s, %s, {_NOW}, {_NOW}, %s) ON CONFLICT (node) DO UPDATE SET host = excluded.host,"
                f" pid = excluded.pid, started_at = excluded.started_at, renewed_at = excluded.renewed_at,"
                f" lease_seconds = excluded.lease_seconds",  # type: ignore[arg-type]
                (self.node, host, pid, self.lease_seconds))

    def renew(self) -> bool:
        """Renew the lease; False when the row was gone (another node reaped it: this node was
        unheard of for longer than its lease) and had to be taken anew."""
        found = self._conn.execute(
            f"UPDATE ductile_nodes SET renewed_at = {_NOW} WHERE node = %s RETURNING node",  # type: ignore[arg-type]
            (self.node,)).fetchone()
        return found is not None

    def retake(self, host: str, pid: int) -> None:
        self.register(host, pid)

    def leave(self) -> None:
        """A clean stop: the row goes, so whatever this node left running is re-queued by the
        next reap of any node rather than after a lease."""
        self._conn.execute("DELETE FROM ductile_nodes WHERE node = %s", (self.node,))

    def try_scheduler_lock(self) -> bool:
        if not self.holds_scheduler:
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEDULER_LOCK_KEY,)).fetchone()
            self.holds_scheduler = bool(row and row[0])
        return self.holds_scheduler

    def still_holds_scheduler(self) -> bool:
        """Is the session (and so the lock) still alive? A broken connection lost the lock."""
        if not self.holds_scheduler:
            return False
        return self.scheduler_holder() == self.node

    def scheduler_holder(self) -> str | None:
        """The node whose session holds the scheduler's lock, None while nobody does."""
        row = self._conn.execute(_HOLDER_SQL, (SCHEDULER_LOCK_KEY >> 32, SCHEDULER_LOCK_KEY & 0xFFFFFFFF)).fetchone()  # type: ignore[arg-type]
        if row is None or not str(row[0]).startswith(APPLICATION_PREFIX):
            return None
        return str(row[0])[len(APPLICATION_PREFIX):]

    def leases(self) -> list[tuple[str, str, int, float, float]]:
        """(node, host, pid, seconds since its last renewal by the server's clock, lease seconds)."""
        return self._conn.execute(
            f"SELECT node, host, pid, round(({_NOW} - renewed_at)::numeric, 3)::float8, lease_seconds"  # type: ignore[arg-type]
            " FROM ductile_nodes ORDER BY node").fetchall()

    def close(self) -> None:
        self._conn.close()


def reap_expired(writer: Any) -> tuple[list[str], set[str]]:
    """Inside the log's write transaction (on the writer's ``PgConnection``): delete the
    rows of nodes whose lease expired and return (those nodes, the nodes still live). A running
    job whose node is not live (expired, gone after a clean stop, or None: claimed before nodes
    were recorded) has no one to finish it."""
    raw = writer.raw  # the server's own SQL, past the SQLite-dialect translation
    expired = [node for (node,) in raw.execute(_REAP_SQL).fetchall()]
    live = {node for (node,) in raw.execute(_LIVE_SQL).fetchall()}
    return expired, live


class Listener:
    """LISTEN ``APPEND_CHANNEL`` on its own connection, in its own thread: ``on_commit()`` for each
    notification of a commit by another process (``ignore``: this process's writer's backend
    pid, whose commits wake the process directly). Reconnects after a lost connection; the
    followers' slow poll covers the gap."""

    def __init__(self, url: str, node: str, on_commit: Callable[[], None], ignore: Callable[[], int | None]) -> None:
        self._url, self._node, self._on_commit, self._ignore = url, node, on_commit, ignore
        self._stop = threading.Event()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="ductile-pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with _connect(self._url, self._node + "/listen") as conn:
                    conn.execute(f"LISTEN {APPEND_CHANNEL}")  # type: ignore[arg-type]
                    if self.failures:
                        log_line(logging.INFO, "event store notifications back", outage_tries=self.failures)
                    self.failures = 0
                    self._on_commit()  # commits made while not listening are read now
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            if note.pid != self._ignore():
                                self._on_commit()
            except Exception as exc:  # logged once per outage; the loop retries after a pause
                if self.failures == 0:
                    log_line(logging.WARNING, "event store notifications lost; following by polling", exc)
                self.failures += 1
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
