"""How every CLI command prints: JSON documents, aligned tables, one-line errors (cli.md §1).

Human tables are the same aligned text whether or not stdout is a terminal; only on a terminal,
and only when ``NO_COLOR`` is unset, does rich draw them, with styled headers. ``rich`` is
imported there and nowhere else on this path, so ``ductile version`` and ``--json`` commands do
not pay for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec


class CliFailure(Exception):
    """A refusal the user should read: printed as ``error: <message>``, exit ``code``.

    With ``--json`` the entry point also puts ``{"error": <message>}`` on stdout, unless
    ``json_written`` says the command already wrote its one JSON document there.
    """

    def __init__(self, message: str, code: int = 1, prefix: str = "error", json_written: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.prefix = prefix
        self.json_written = json_written


def emit_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")


def debugging() -> bool:
    """``DUCTILE_DEBUG=1``: a fault prints its traceback on stderr, not only its one line."""
    return os.environ.get("DUCTILE_DEBUG") == "1"


def colour_enabled() -> bool:
    """cli.md §1: colour only when stdout is a TTY and ``NO_COLOR`` is unset (an empty
    ``NO_COLOR`` counts as unset, as no-color.org says)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _cells(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The plain table: upper-case headers, ``-`` for empty cells, columns two spaces apart."""
    cells = _cells(rows)
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if colour_enabled():
        _print_rich_table(headers, rows)
    else:
        print(table(headers, rows))


def heading(title: str, *, gap: bool = False) -> None:
    """A section title (``job inspect``'s Job, Transitions, ...): bold on a colour terminal.
    ``gap`` puts a blank line before it, between sections."""
    if gap:
        print()
    if colour_enabled():
        from rich.console import Console
        from rich.text import Text

        Console(file=sys.stdout, highlight=False).print(Text(title, style="bold"))
    else:
        print(title)


CHECK_STYLES = {"OK": "green", "FAIL": "bold red", "SKIP": "yellow"}


def print_check(name: str, word: str, *, path: str | None = None, detail: str | None = None) -> None:
    """One checklist line, ``- <name>: OK|FAIL|SKIP (path=…) - <detail>`` (cli.md §1), with the
    word coloured on a colour terminal."""
    head, tail = f"- {name}: ", (f" (path={path})" if path else "") + (f" - {detail}" if detail is not None else "")
    if colour_enabled():
        from rich.console import Console
        from rich.text import Text

        line = Text(head)
        line.append(word, style=CHECK_STYLES.get(word, ""))
        line.append(tail)
        Console(file=sys.stdout, highlight=False, soft_wrap=True).print(line)
    else:
        print(head + word + tail)


def _print_rich_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    # The layout matches table() (no box, two spaces between columns, none at the edges), so a
    # terminal shows the same columns a pipe gets, with bold headers; a row wider than the
    # terminal wraps inside its cells instead of across the screen.
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for h in headers:
        grid.add_column(Text(h.upper()))
    for row in _cells(rows):
        # Text, not str: a cell is data, so "[red]" or ":smile:" in it is printed as written.
        grid.add_row(*(Text(v, style="dim") if v == "-" else Text(v) for v in row))
    Console(file=sys.stdout, highlight=False).print(grid)


def fail(
    message: str, *, json: bool = False, code: int = 1, prefix: str = "error", document: Any = None
) -> CliFailure:
    """Build the failure to raise; with ``--json`` stdout also carries ``document`` (default
    ``{"error": message}``)."""
    if json:
        emit_json({"error": message} if document is None else document)
    return CliFailure(message, code=code, prefix=prefix, json_written=json)
