"""docs/README.md is the map of the code: it must name only modules and functions that exist, and
its request path names each file once (issue 10 item 9). A rename that forgets the map fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "README.md").read_text()
PATH_SECTION = DOC.split("## One request's path", 1)[1].split("\n## ", 1)[0]


def test_every_module_and_folder_the_map_names_exists() -> None:
    named = set(re.findall(r"`(ductile/[\w/]+(?:\.py)?)`", DOC))
    assert named, "the map names no module"
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == [], f"docs/README.md names what does not exist: {missing}"


def test_the_request_path_names_each_file_once() -> None:
    files = re.findall(r"`(ductile/[\w/]+\.py)`", PATH_SECTION)
    assert len(files) >= 10
    assert sorted(f for f in set(files) if files.count(f) > 1) == []


def test_functions_the_request_path_names_are_defined_in_its_files() -> None:
    defined: set[str] = set()
    for rel in set(re.findall(r"`(ductile/[\w/]+\.py)`", PATH_SECTION)):
        tree = ast.parse((REPO / rel).read_text())
        defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    words = {"echo", "poll", "max_attempts"}  # the example's plugin and command, a config key: not code
    named = {m.split("(")[0] for m in re.findall(r"`([a-z_]+)(?:\(|`)", PATH_SECTION)} - words
    assert {"trigger", "enqueue", "decide_enqueue", "classify"} <= named
    assert sorted(named - defined) == [], "docs/README.md's request path names functions its files do not define"
