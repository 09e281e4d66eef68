"""docs/reliability.md proves each promise with named tests: every ``path::test`` it names must
exist, so a renamed or deleted test cannot leave a promise standing on nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "reliability.md").read_text()
NAMED = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC)


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_the_reliability_page_names_exists() -> None:
    assert len(NAMED) >= 20, "the page names fewer tests than its promises need"
    missing = [f"{file}::{name}" for file, name in NAMED
               if not (REPO / file).is_file() or name not in _tests_in(REPO / file)]
    assert missing == [], f"docs/reliability.md names tests that do not exist: {missing}"


def test_every_promise_names_at_least_one_test() -> None:
    promises = re.split(r"\n### ", DOC.split("## The promises", 1)[1].split("\n## ", 1)[0])[1:]
    assert len(promises) >= 9
    bare = [p.splitlines()[0] for p in promises if not re.search(r"`tests/[\w/]+\.py::\w+`", p)]
    assert bare == [], f"promises without a test: {bare}"


def test_the_page_is_linked_from_both_readmes() -> None:
    for readme in ("README.md", "docs/README.md"):
        assert "reliability.md" in (REPO / readme).read_text(), readme
