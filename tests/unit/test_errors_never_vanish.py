"""No broad ``except`` in ``ductile/`` lets an error vanish (issue 10, "Done when").

A handler that catches ``Exception``, ``BaseException`` or everything must do at least one of:
log it (a ``Log`` method, ``internal(...)`` in the API, ``internal_error(...)`` in the CLI,
``_log_line(...)`` in the event log, which sits below the logging package), re-raise it, or hand
the exception object on (to a caller's future, a chained exception, a result), so someone sees it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ductile

ROOT = Path(ductile.__file__).parent
BROAD = frozenset({"Exception", "BaseException"})
LOG_METHODS = frozenset({"debug", "info", "warn", "warning", "error", "exception", "critical", "at"})
REPORTERS = frozenset({"internal", "internal_error", "_log_line", "log_line"})


def _is_broad(node: ast.expr | None) -> bool:
    if node is None:
        return True  # a bare ``except:``
    if isinstance(node, ast.Name):
        return node.id in BROAD
    if isinstance(node, ast.Tuple):
        return any(_is_broad(e) for e in node.elts)
    return False


def _keeps_the_error(handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(ast.Module(body=handler.body, type_ignores=[])):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in LOG_METHODS:
                return True
            if isinstance(func, ast.Name) and func.id in REPORTERS:
                return True
        if isinstance(node, ast.Raise) and node.exc is None:
            return True
        if handler.name and isinstance(node, ast.Name) and node.id == handler.name:
            return True  # handed on: delivered to a caller, chained or re-raised
    return False


def broad_handlers_that_lose_the_error() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ExceptHandler) and _is_broad(node.type) and not _keeps_the_error(node):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return found


def test_no_broad_except_in_ductile_lets_an_error_vanish() -> None:
    assert broad_handlers_that_lose_the_error() == []


def test_the_check_sees_a_silent_handler_and_accepts_a_logged_one() -> None:
    def handlers(source: str) -> list[ast.ExceptHandler]:
        return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ExceptHandler)]

    silent, logged, reraised, narrow = handlers(
        "try:\n    f()\nexcept Exception:\n    return None\n"
        "try:\n    f()\nexcept Exception as exc:\n    log.error('f failed', exc=exc)\n"
        "try:\n    f()\nexcept BaseException:\n    cleanup()\n    raise\n"
        "try:\n    f()\nexcept ValueError:\n    pass\n"
    )
    assert _is_broad(silent.type) and not _keeps_the_error(silent)
    assert _keeps_the_error(logged) and _keeps_the_error(reraised)
    assert not _is_broad(narrow.type)
