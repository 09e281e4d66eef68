"""Every command's ``--help`` shows how to run it (issue 20): an ``Examples:`` section whose lines
run that very command. A new command without one fails here, naming itself."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout

import pytest
from cyclopts import App

from ductile.cli.main import app


def commands(node: App = app, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command that runs something (not a noun that only groups verbs)."""
    names = [name for name in node if not name.startswith("-") or (not path and name == "--install-completion")]
    if path and not [n for n in names if not n.startswith("-")]:
        yield path
        return
    for name in names:
        yield from commands(node[name], (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as done:
        app([*path, "--help"], exit_on_error=False)
    assert done.value.code in (0, None)
    return out.getvalue()


def test_the_walk_finds_every_noun_and_verb() -> None:
    found = set(commands())
    assert {("version",), ("completion",), ("--install-completion",), ("system", "start"), ("api",),
            ("config", "token", "create"), ("vault", "audit")} <= found
    assert len(found) >= 60


def test_every_commands_help_shows_an_example() -> None:
    missing = []
    for path in sorted(commands()):
        text = help_text(path)
        examples = text.split("Examples:", 1)[1].splitlines() if "Examples:" in text else []
        runs_it = [line for line in examples if line.strip().startswith(" ".join(("ductile", *path)))]
        if not runs_it:
            missing.append(" ".join(path))
    assert missing == [], f"--help shows no 'Examples:' that runs the command: {missing}"
