"""Plugin state (one object per plugin or instance) and the append-only facts."""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar

import msgspec

from ductile.events.record import Recorded
from ductile.events.timefmt import sql_ts
from ductile.events.types import EventBase, PluginFactAppended, PluginStateChanged
from ductile.projections.projection import BULK_ROWS_HELD, Handler, Projection

SCHEMA = """
CREATE TABLE IF NOT EXISTS plugin_state (
  plugin TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  job_id TEXT,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plugin_facts (
  id INTEGER PRIMARY KEY,
  seq INTEGER NOT NULL,
  plugin_name TEXT NOT NULL,
  fact_type TEXT NOT NULL,
  fact_json TEXT NOT NULL,
  job_id TEXT NOT NULL,
  command TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (plugin_name, seq)
)
"""

PROJECTION = Projection(name="plugin_state", version=1, schema=SCHEMA, tables=("plugin_state", "plugin_facts"), reads_meta=False)

_json = msgspec.json.Encoder()


@PROJECTION.on(PluginStateChanged)
def _state(cur: sqlite3.Cursor, e: PluginStateChanged, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO plugin_state(plugin, state, job_id, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(plugin) DO UPDATE SET state=excluded.state, job_id=excluded.job_id,"
        " updated_at=excluded.updated_at",
        (e.plugin, _json.encode(e.state).decode(), e.job_id, sql_ts(e.at)),
    )


@PROJECTION.on(PluginFactAppended)
def _fact(cur: sqlite3.Cursor, e: PluginFactAppended, rec: Recorded) -> None:
    cur.execute(
        "INSERT INTO plugin_facts(id, seq, plugin_name, fact_type, fact_json, job_id, command, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.position, e.seq, e.plugin, e.fact_type, _json.encode(e.fact).decode(), e.job_id, e.command, sql_ts(e.at)),
    )


_INSERT_STATES = "INSERT INTO plugin_state(plugin, state, job_id, updated_at) VALUES (?, ?, ?, ?)"
_INSERT_FACTS = ("INSERT INTO plugin_facts(id, seq, plugin_name, fact_type, fact_json, job_id, command, created_at)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


@PROJECTION.bulk_fold
class PluginStateFold:
    """Each plugin's last state (the live upsert keeps a plugin's row where it was first inserted:
    so does the dict) and the facts, appended. States are one per plugin; facts are written
    whenever ``BULK_ROWS_HELD`` of them are held."""

    held: ClassVar[int] = BULK_ROWS_HELD  # a test lowers it to make the facts go mid-log

    def __init__(self) -> None:
        self.states: dict[str, tuple[Any, ...]] = {}
        self.facts: list[tuple[Any, ...]] = []
        self.handlers: dict[type[EventBase], Handler] = {PluginStateChanged: self._state,
                                                          PluginFactAppended: self._fact}

    def flush(self, cur: sqlite3.Cursor, *, final: bool) -> None:
        if final or len(self.facts) > self.held:
            cur.executemany(_INSERT_FACTS, self.facts)
            self.facts = []
        if final:
            cur.executemany(_INSERT_STATES, list(self.states.values()))

    def _state(self, cur: sqlite3.Cursor, e: PluginStateChanged, rec: Recorded) -> None:
        self.states[e.plugin] = (e.plugin, _json.encode(e.state).decode(), e.job_id, sql_ts(e.at))

    def _fact(self, cur: sqlite3.Cursor, e: PluginFactAppended, rec: Recorded) -> None:
        self.facts.append((rec.position, e.seq, e.plugin, e.fact_type, _json.encode(e.fact).decode(), e.job_id,
                           e.command, sql_ts(e.at)))


_decode_state = msgspec.json.Decoder(dict[str, Any])


class PluginStateRecord(msgspec.Struct, frozen=True):
    """A plugin's current state object and the job that last set it."""

    state: dict[str, Any]
    job_id: str | None


def find_state(cur: sqlite3.Cursor, plugin: str) -> PluginStateRecord | None:
    row = cur.execute("SELECT state, job_id FROM plugin_state WHERE plugin=?", (plugin,)).fetchone()
    return None if row is None else PluginStateRecord(_decode_state.decode(row[0]), row[1])


def last_fact_seq(cur: sqlite3.Cursor, plugin: str) -> int:
    """The sequence number of the plugin's newest fact, 0 before the first."""
    row = cur.execute("SELECT COALESCE(MAX(seq), 0) FROM plugin_facts WHERE plugin_name=?", (plugin,)).fetchone()
    return int(row[0])


class PluginFact(msgspec.Struct, frozen=True, kw_only=True):
    """One appended fact as ``system plugin-facts`` shows it (plugins.md §8); ``id`` is its log position."""

    id: int
    seq: int
    plugin: str
    fact_type: str
    job_id: str
    command: str
    fact: dict[str, Any]
    created_at: str


def list_facts(cur: sqlite3.Cursor, plugin: str, fact_type: str | None, limit: int) -> list[PluginFact]:
    """The plugin's newest ``limit`` facts (of ``fact_type`` when given), newest first."""
    where, args = "plugin_name=?", [plugin]
    if fact_type is not None:
        where += " AND fact_type=?"
        args.append(fact_type)
    rows = cur.execute(
        "SELECT id, seq, plugin_name, fact_type, job_id, command, fact_json, created_at FROM plugin_facts"
        f" WHERE {where} ORDER BY seq DESC LIMIT ?", (*args, limit),
    ).fetchall()
    return [PluginFact(id=r[0], seq=r[1], plugin=r[2], fact_type=r[3], job_id=r[4], command=r[5],
                       fact=_decode_state.decode(r[6]), created_at=r[7]) for r in rows]
