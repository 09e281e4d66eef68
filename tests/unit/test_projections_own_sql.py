"""Projections own their SQL (issue 10 item 2, ARCHITECTURE.md §2).

Walks every module under ``ductile/`` with ``ast`` and fails on (a) a cursor or connection
``.execute*(`` call and (b) positional indexing of a query result (``row[3]``,
``cur.execute(...).fetchone()[0]``) outside the packages that own tables: ``ductile/projections/``
(the read models and their typed readers) and ``ductile/events/`` (the log itself). Code elsewhere
reads through a typed reader that returns a Struct, so a column added or reordered breaks one
module, not its callers.

``PENDING`` lists the modules that still run their own SQL, each with why it is allowed for now.
It may only shrink: an entry whose module has become clean fails the test, so the list cannot rot.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec

import ductile

ROOT = Path(ductile.__file__).parent

# Packages whose own tables these are: the only homes of SQL text.
OWNERS = ("projections", "events")

# Modules outside OWNERS that still query sqlite themselves, and why. Remove an entry when the
# module reads through a projection's typed reader instead.
PENDING: dict[str, str] = {
}

_EXECUTE = {"execute", "executemany", "executescript"}
_FETCH = {"fetchone", "fetchall", "fetchmany"}
# Names that hold a query result row by convention in this code base.
_ROW_NAME = re.compile(r"^(r|rec|record)$|row")


class Finding(msgspec.Struct, frozen=True):
    module: str  # path relative to ductile/
    line: int
    what: str


def _is_call_to(node: ast.AST, names: set[str]) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names


def _is_int_index(node: ast.Subscript) -> bool:
    index = node.slice
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
        index = index.operand
    return isinstance(index, ast.Constant) and type(index.value) is int


def findings_in(source: str, module: str) -> list[Finding]:
    found: list[Finding] = []
    for node in ast.walk(ast.parse(source, module)):
        if _is_call_to(node, _EXECUTE):
            found.append(Finding(module, node.lineno, "runs SQL (.execute)"))
        elif isinstance(node, ast.Subscript) and _is_int_index(node):
            value = node.value
            if _is_call_to(value, _FETCH) or (isinstance(value, ast.Name) and _ROW_NAME.search(value.id)):
                found.append(Finding(module, node.lineno, f"indexes a row by position ({ast.unparse(node)})"))
    return sorted(found, key=lambda f: (f.line, f.what))


def _modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(ROOT).as_posix(), p) for p in sorted(ROOT.rglob("*.py"))
            if p.relative_to(ROOT).parts[0] not in OWNERS]


def test_only_projections_and_the_log_run_sql_or_index_rows() -> None:
    found = [f for name, path in _modules() if name not in PENDING for f in findings_in(path.read_text(), name)]
    assert found == [], "\n".join(f"ductile/{f.module}:{f.line}: {f.what}" for f in found)


def test_pending_list_only_shrinks() -> None:
    clean = [name for name, path in _modules() if name in PENDING and not findings_in(path.read_text(), name)]
    missing = sorted(set(PENDING) - {name for name, _ in _modules()})
    assert clean + missing == [], f"no longer runs SQL or is gone: remove from PENDING: {clean + missing}"


def test_the_scan_sees_sql_and_positional_rows() -> None:
    source = (
        "def load(cur, key):\n"
        "    row = cur.execute('SELECT a, b FROM t WHERE k=?', (key,)).fetchone()\n"
        "    n = cur.execute('SELECT COUNT(*) FROM t').fetchone()[0]\n"
        "    return row[1], n, parts[0]\n"
    )
    assert [(f.line, f.what.split(" (")[0]) for f in findings_in(source, "x.py")] == [
        (2, "runs SQL"), (3, "indexes a row by position"), (3, "runs SQL"), (4, "indexes a row by position"),
    ]
