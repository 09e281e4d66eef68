"""docs/performance.md's commands name benches and flags that exist: a renamed script or flag
fails here rather than in a reader's terminal. (The benches themselves take minutes: `make bench`
runs them; tests/unit/runtime/test_jobs_floor.py and tests/unit/api/test_api_floor_app.py check
that the floors measure the real path.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "performance.md").read_text()
COMMAND = re.compile(r"python (bench/\w+\.py)([^;#\n]*)")


def _flags(script: Path) -> set[str]:
    return set(re.findall(r"""add_argument\(\s*"(--[\w-]+)\"""", script.read_text()))


def test_every_bench_command_in_the_page_names_a_script_and_flags_it_takes() -> None:
    commands = COMMAND.findall(DOC)
    assert len(commands) >= 8, "the Reproduce section lost its commands"
    wrong = []
    for script, rest in commands:
        path = REPO / script
        if not path.is_file():
            wrong.append(f"{script}: no such script")
            continue
        # Shell words: a loop variable ("$a") holds flags the loop's list spells out, checked below.
        used = {word.split("=", 1)[0] for word in shlex.split(rest.replace("$a", "")) if word.startswith("--")}
        wrong += [f"{script}: no {flag}" for flag in sorted(used - _flags(path))]
    loops = re.findall(r'for a in ((?:"[^"]*" ?)+); do\s*\n?\s*.*?python (bench/\w+\.py)', DOC, re.S)
    for quoted, script in loops:
        used = {w for w in shlex.split(" ".join(shlex.split(quoted))) if w.startswith("--")}
        wrong += [f"{script}: no {flag}" for flag in sorted(used - _flags(REPO / script))]
    assert wrong == []


def test_every_bench_make_bench_runs_is_in_the_table() -> None:
    makefile = (REPO / "Makefile").read_text()
    run = re.findall(r"\$\(BIN\)/python (bench/\w+\.py)", makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0])
    table = DOC.split("## The benches and where each one stands", 1)[1].split("\n## ", 1)[0]
    assert run and [s for s in run if s != "bench/append.py" and f"`{s}" not in table] == []
