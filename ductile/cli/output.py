"""How every CLI command prints: JSON documents, aligned tables, one-line errors."""

from __future__ import annotations

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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print(table(headers, rows))


def fail(
    message: str, *, json: bool = False, code: int = 1, prefix: str = "error", document: Any = None
) -> CliFailure:
    """Build the failure to raise; with ``--json`` stdout also carries ``document`` (default
    ``{"error": message}``)."""
    if json:
        emit_json({"error": message} if document is None else document)
    return CliFailure(message, code=code, prefix=prefix, json_written=json)
