"""Trust checks on a plugin's entrypoint and directory (plugins.md §1).

A failed check refuses only that plugin (`TrustError`, logged by discovery as
`failed to load plugin`); symlink handling is discovery's concern and happens before these checks,
which run on resolved paths.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


class TrustError(Exception):
    """The plugin failed a trust check and is skipped."""


def check_entrypoint_text(entrypoint: str) -> PurePosixPath:
    """The manifest's `entrypoint` as written: relative and without `..`."""
    if os.path.isabs(entrypoint):
        raise TrustError(f"entrypoint must be a relative path: {entrypoint}")
    # Stricter than a path-component check on purpose: the spec says "contains no `..`".
    if ".." in entrypoint:
        raise TrustError(f"entrypoint must not contain '..': {entrypoint}")
    return PurePosixPath(entrypoint)


def check_resolved(directory: Path, entrypoint: Path, roots: Sequence[Path]) -> None:
    """Containment, file type, execute bit and directory mode, on already-resolved paths."""
    if not entrypoint.is_relative_to(directory):
        raise TrustError(f"entrypoint resolves outside the plugin directory: {entrypoint}")
    if not any(entrypoint.is_relative_to(root) for root in roots):
        raise TrustError(f"entrypoint resolves outside plugin_roots: {entrypoint}")
    try:
        entry_mode = entrypoint.stat().st_mode
    except FileNotFoundError:
        raise TrustError(f"entrypoint not found: {entrypoint}") from None
    except OSError as exc:
        raise TrustError(f"entrypoint cannot be inspected: {entrypoint}: {exc.strerror}") from None
    if not stat.S_ISREG(entry_mode):
        raise TrustError(f"entrypoint is not a regular file: {entrypoint}")
    if not entry_mode & 0o111:
        raise TrustError(f"entrypoint is not executable: {entrypoint}")
    try:
        dir_mode = directory.stat().st_mode
    except OSError as exc:
        raise TrustError(f"plugin directory cannot be inspected: {directory}: {exc.strerror}") from None
    if dir_mode & 0o002:
        raise TrustError(f"plugin directory is world-writable: {directory}")
