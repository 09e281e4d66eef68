"""Conformance: the hash chain, and which state DBs the log agrees to open."""

from __future__ import annotations

import sqlite3

import pytest

from ductile.events import codec
from ductile.events.log import EventLog, verify_chain
from ductile.events.schema import UnknownSchema
from ductile.events.store import EventStore
from tests.stores import raw_connection

from .samples import note

pytestmark = pytest.mark.anyio


async def _log_with_events(open_log, n: int = 10) -> EventLog:
    log = await open_log()
    for i in range(1, n + 1):
        await log.append(f"s-{i % 3}", [note(i)])
    return log


def _raw(store: EventStore):
    return raw_connection(store)


async def test_verify_chain_passes_on_a_clean_log(open_log):
    log = await _log_with_events(open_log)
    conn = log.reader()
    report = verify_chain(conn)
    conn.close()
    assert report.ok
    assert (report.events, report.head, report.problem) == (10, 10, None)


async def test_verify_chain_passes_on_an_empty_log(open_log):
    log = await open_log()
    conn = log.reader()
    assert verify_chain(conn).ok
    conn.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data", codec.encode(note(999))),
        ("type", "GatewayStopped"),
        ("event_id", bytes(16)),
    ],
)
async def test_verify_chain_detects_a_tampered_row(open_log, store, column, value):
    log = await _log_with_events(open_log)
    await log.aclose()
    raw = _raw(store)
    raw.execute(f"UPDATE events SET {column} = ? WHERE position = 5", (value,))
    report = verify_chain(raw)
    raw.close()
    assert not report.ok
    assert report.position == 5
    assert report.problem == "chain broken at position 5"
    assert report.events == 4


async def test_verify_chain_detects_a_deleted_row(open_log, store):
    log = await _log_with_events(open_log)
    await log.aclose()
    raw = _raw(store)
    raw.execute("DELETE FROM events WHERE position = 5")
    report = verify_chain(raw)
    raw.close()
    assert not report.ok
    assert report.problem == "gap: expected position 5, found 6"
    assert report.position == 6


async def test_appends_after_reopen_extend_the_chain(open_log):
    log = await _log_with_events(open_log, 3)
    await log.aclose()
    log = await open_log()
    await log.append("s", [note(4)])
    conn = log.reader()
    assert verify_chain(conn).ok
    conn.close()


@pytest.mark.sqlite_only
def test_a_fresh_database_gets_the_log_schema(tmp_path, durability):
    path = tmp_path / "fresh.db"
    log = EventLog(path, durability=durability).open_sync()
    try:
        log.append_sync("s", [note(1)])
        conn = log.reader()
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"events", "ductile_meta", "projections"} <= tables
        assert conn.execute("SELECT value FROM ductile_meta WHERE key = 'log_schema'").fetchone() == ("1",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert verify_chain(conn).ok
        conn.close()
    finally:
        log.close()


def _foreign_db(path) -> None:
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    raw.execute("INSERT INTO notes(body) VALUES ('keep me')")
    raw.commit()
    raw.close()


@pytest.mark.sqlite_only
def test_a_database_of_someone_else_is_refused_untouched(tmp_path, durability):
    path = tmp_path / "other.db"
    _foreign_db(path)
    with pytest.raises(UnknownSchema) as err:
        EventLog(path, durability=durability).open_sync()
    assert str(err.value) == (
        f"state database {path} has an unknown schema (no event log); refusing to modify it"
    )
    raw = sqlite3.connect(path)
    assert [n for (n,) in raw.execute("SELECT name FROM sqlite_master")] == ["notes"]
    assert raw.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
    raw.close()


@pytest.mark.sqlite_only
def test_a_refused_database_keeps_its_journal_mode(tmp_path, durability):
    path = tmp_path / "other.db"
    _foreign_db(path)
    with pytest.raises(UnknownSchema):
        EventLog(path, durability=durability).open_sync()
    raw = sqlite3.connect(path)
    mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    raw.close()
    assert mode == "delete"


async def test_a_log_written_by_a_newer_ductile_is_refused(open_log, store, durability):
    log = await open_log()
    await log.aclose()
    raw = _raw(store)
    raw.execute("UPDATE ductile_meta SET value = '99' WHERE key = 'log_schema'")
    raw.close()
    with pytest.raises(UnknownSchema, match="newer than this Ductile supports"):
        EventLog(store, durability=durability).open_sync()


def test_a_store_holding_someone_elses_tables_is_refused_untouched(store, durability):
    raw = _raw(store)
    raw.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    raw.execute("INSERT INTO notes(id, body) VALUES (1, 'keep me')")
    with pytest.raises(UnknownSchema) as err:
        EventLog(store, durability=durability).open_sync()
    assert str(err.value) == (
        f"state database {store.location} has an unknown schema (no event log); refusing to modify it"
    )
    assert raw.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
    raw.close()


def test_a_fresh_store_gets_the_log_schema_and_a_valid_chain(store, durability):
    log = EventLog(store, durability=durability).open_sync()
    try:
        log.append_sync("s", [note(1)])
        conn = log.reader()
        assert conn.execute("SELECT value FROM ductile_meta WHERE key = 'log_schema'").fetchone() == ("1",)
        assert conn.execute("SELECT name, version, position FROM projections").fetchall() == []
        assert verify_chain(conn).ok
        conn.close()
    finally:
        log.close()
