"""Conformance on PostgreSQL: the writer's connection to the server breaks (a server restart, a
failover, an administrator's pg_terminate_backend); the batch in flight fails as a storage error,
the log says it is unwritable, and the next append commits on a new connection."""

from __future__ import annotations

import pytest

from ductile.events.log import EventLog, is_storage_error, read_rows, verify_chain
from ductile.events.store import EventStore
from tests.stores import raw_connection

from .samples import note


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
