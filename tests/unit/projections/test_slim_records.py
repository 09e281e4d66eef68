"""``Projection.reads_meta=False``: a fold of such projections reads only a record's position,
version, type and event (``record.from_slim_row``). Held to it two ways: no handler module names
the blank fields, and the fold of every registered projection from slim records writes the rows the
fold from whole records writes, on each frozen release log."""

from __future__ import annotations

import inspect
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from ductile.events.sqlite_store import connect
from ductile.projections.fold import fold_log
from ductile.projections.registry import ALL

RELEASES = Path(__file__).resolve().parents[2] / "fixtures" / "releases"
BLANK = re.compile(r"\brec(ord)?\.(event_id|stream|recorded_at)\b")


@pytest.mark.parametrize("projection", [p for p in ALL if not p.reads_meta], ids=lambda p: p.name)
def test_a_slim_projections_module_never_reads_the_blank_fields(projection: Any) -> None:
    module = next(m for m in list(sys.modules.values())
                  if getattr(m, "PROJECTION", None) is projection)
    assert not BLANK.findall(inspect.getsource(module))


def _folded(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = connect(db, "normal")
    try:
        conn.execute("BEGIN IMMEDIATE")
        fold_log(conn, ALL)
        conn.execute("COMMIT")
        return {t: conn.execute(f"SELECT rowid, * FROM {t}").fetchall() for p in ALL for t in p.tables}
    finally:
        conn.close()


@pytest.mark.parametrize("release", sorted(p.name for p in RELEASES.iterdir() if p.is_dir()))
def test_slim_records_fold_the_rows_whole_records_fold(release: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    slim, whole = tmp_path / "slim.db", tmp_path / "whole.db"
    for db in (slim, whole):
        shutil.copy(RELEASES / release / "state.db", db)
    assert all(not p.reads_meta for p in ALL)  # so the first fold reads slim records
    expected = _folded(slim)
    for p in ALL:
        monkeypatch.setattr(p, "reads_meta", True)
    assert _folded(whole) == expected
