"""`~` expansion and relative-path resolution (spec config.md §3.3)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def home_directory(environ: Mapping[str, str]) -> Path:
    """``$HOME`` from the given environment, else the account's home."""
    home = environ.get("HOME")
    return Path(home) if home else Path.home()


def expand_home(text: str, home: Path) -> str:
    """Expand a leading ``~`` or ``~/`` to ``home``; ``~user`` is deliberately left alone."""
    if text == "~" or text.startswith("~/"):
        return str(home) + text[1:]
    return text


def resolve_path(text: str, base: Path, home: Path) -> Path:
    """Absolute, normalised path for a config value, relative paths against ``base``.

    ``normpath`` rather than ``resolve()``: symlinks must stay visible to the symlink check.
    """
    path = Path(expand_home(text, home))
    if not path.is_absolute():
        path = base / path
    return Path(os.path.normpath(path))
