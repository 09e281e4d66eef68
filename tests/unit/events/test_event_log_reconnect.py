"""Conformance on PostgreSQL: a connection to the server breaks (a server restart, a failover, an
administrator's pg_terminate_backend). The writer's batch in flight fails as a storage error, the
log says it is unwritable, and the next append commits on a new connection; a long-lived reader
(retention's) is replaced at its next pass."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from ductile.config.model import ServiceConfig
from ductile.events.log import EventLog, read_rows, verify_chain
from ductile.events.store import EventStore, is_storage_error
from ductile.projections.registry import default_runner
from ductile.runtime.retention import Retention
from tests.stores import raw_connection

from .samples import note

NOW = time.time_ns()


@pytest.mark.postgres_only  # a SQLite file connection does not break; its storage errors: test_event_log_append
def test_a_broken_server_connection_fails_one_batch_then_the_writer_reconnects(store: EventStore, durability: str):
    log = EventLog(store, durability=durability).open_sync()
    try:
        log.append_sync("s", [note(1)])
        admin = raw_connection(store)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name = 'ductile-writer' AND datname = current_database()")
        admin.close()
        with pytest.raises(Exception) as failed:
            log.append_sync("s", [note(2)])
        assert is_storage_error(failed.value)
        assert log.unwritable is not None
        recs = log.append_sync("s", [note(3)])
        assert (recs[0].position, recs[0].version) == (2, 2)
        assert log.unwritable is None
    finally:
        log.close()
    conn = store.reader()
    try:
        assert [r.position for r in read_rows(conn)] == [1, 2]
        assert verify_chain(conn).ok
    finally:
        conn.close()


@pytest.mark.postgres_only
def test_retention_replaces_a_broken_read_connection_at_its_next_pass(store: EventStore, durability: str):
    log = EventLog(store, durability=durability, projections=default_runner()).open_sync()
    retention = Retention(log, SimpleNamespace(service=ServiceConfig()))  # type: ignore[arg-type]
    try:
        assert retention._due(NOW) is None  # nothing old enough: its reader is open now
        admin = raw_connection(store)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name = 'ductile-reader' AND datname = current_database()")
        admin.close()
        with pytest.raises(Exception) as failed:
            retention._due(NOW)
        assert log.store.spoils_connection(failed.value)
        assert retention._due(NOW) is None  # on a new connection
    finally:
        retention.close()
        log.close()
