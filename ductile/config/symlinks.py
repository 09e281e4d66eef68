"""Symlinked config files and plugin roots (spec config.md §3.3)."""

from __future__ import annotations

from pathlib import Path

from ductile.config.errors import ConfigError
from ductile.config.model import Diagnostic


def check_symlinks(paths: list[Path], allow: bool) -> list[Diagnostic]:
    """Fatal unless ``service.allow_symlinks: true``, which turns each into a warning."""
    warnings: list[Diagnostic] = []
    for path in paths:
        if not path.is_symlink():
            continue
        if not allow:
            raise ConfigError(f"symlink not allowed: {path} (set service.allow_symlinks: true to permit)")
        warnings.append(
            Diagnostic(
                level="warning",
                category="config",
                field="service.allow_symlinks",
                message=f"symlink followed: {path} (allowed by service.allow_symlinks)",
                file=str(path),
            )
        )
    return warnings
