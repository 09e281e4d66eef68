"""Every projection's SCHEMA, translated by sql_dialect.to_postgres, runs on a real PostgreSQL
server; a statement with no safe translation is listed here (xfail) for a per-dialect form."""

from __future__ import annotations

import importlib
import pkgutil

import psycopg
import pytest

import ductile.projections
from ductile.events.schema import EVENTS_DDL
from ductile.events.sql_dialect import UntranslatableSQL, to_postgres
from ductile.projections.fold import statements
from ductile.projections.projection import Projection


def _projections() -> list[Projection]:
    found = []
    for info in pkgutil.iter_modules(ductile.projections.__path__):
        module = importlib.import_module(f"ductile.projections.{info.name}")
        if isinstance(getattr(module, "PROJECTION", None), Projection):
            found.append(module.PROJECTION)
    return sorted(found, key=lambda p: p.name)


PROJECTIONS = _projections()
# Statements known to need a per-dialect form, by projection name: none today.
PER_DIALECT: dict[str, str] = {}


def test_every_projection_module_is_covered() -> None:
    assert {p.name for p in PROJECTIONS} >= {"queue", "ledger", "schedules", "breakers", "vault", "audit"}


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_projection_schema_creates_its_tables_on_postgres(projection: Projection, pg_url: str) -> None:
    if projection.name in PER_DIALECT:
        pytest.xfail(PER_DIALECT[projection.name])
    with psycopg.connect(pg_url) as conn:
        for statement in statements(projection.schema):
            try:
                conn.execute(to_postgres(statement), ())
            except (UntranslatableSQL, psycopg.Error) as e:
                pytest.fail(f"{projection.name}: {e}\n{statement}")
        made = {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()}
    assert set(projection.tables) <= made


def test_the_event_log_tables_are_created_on_postgres(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        for statement in statements(EVENTS_DDL):
            conn.execute(to_postgres(statement), ())
        columns = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events'").fetchall())
    # Positions and nanosecond timestamps need 64 bits; ids, payloads and the chain are bytes.
    assert columns["position"] == columns["recorded_at"] == "bigint"
    assert columns["event_id"] == columns["data"] == columns["chain"] == "bytea"
