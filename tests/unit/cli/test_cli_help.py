"""Every command's ``--help`` shows how to run it (issue 20): an ``Examples:`` section whose lines
run that very command. A new command without one fails here, naming itself."""

from __future__ import annotations

import io
import shlex
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


def examples(text: str) -> list[str]:
    """The lines of the help's ``Examples:`` section (up to the first panel), blank ones dropped."""
    if "Examples:" not in text:
        return []
    block = text.split("Examples:", 1)[1].split("╭", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_every_commands_help_shows_an_example() -> None:
    missing = []
    for path in sorted(commands()):
        runs_it = [line for line in examples(help_text(path)) if line.startswith(" ".join(("ductile", *path)))]
        if not runs_it:
            missing.append(" ".join(path))
    assert missing == [], f"--help shows no 'Examples:' that runs the command: {missing}"


def test_every_example_is_one_line_the_parser_accepts() -> None:
    """An example wrapped by the help's width, or naming a flag the command lacks, fails here."""
    for path in sorted(commands()):
        for line in examples(help_text(path)):
            assert "ductile " in line, f"ductile {' '.join(path)} --help: {line!r} is not a command (wrapped?)"
            command = line[line.index("ductile "):]
            for shell_syntax in (" > ", " >> ", " | ", " &"):  # what follows is the shell's, not ductile's
                command = command.split(shell_syntax)[0]
            app.parse_args(shlex.split(command)[1:], exit_on_error=False, print_error=False)
