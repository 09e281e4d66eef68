"""What the section builders share: where a value came from, and the warnings collected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ductile.config.durations import parse_duration
from ductile.config.errors import ConfigError
from ductile.config.locations import KeyPath, Location, Origins, dotted
from ductile.config.model import Diagnostic

T = TypeVar("T")


class BuildContext:
    def __init__(self, origins: Origins, config_dir: Path, home: Path, root_name: str) -> None:
        self.origins = origins
        self.config_dir = config_dir
        self.home = home
        self.root_name = root_name
        self.warnings: list[Diagnostic] = []
        # Load errors of independent parts (a section, a plugin entry), collected so that one
        # load reports them all (config.md §5).
        self.errors: list[ConfigError] = []

    def attempt(self, build: Callable[[], T], fallback: T) -> T:
        """``build()``, or ``fallback`` with its ConfigError recorded, so the load goes on."""
        try:
            return build()
        except ConfigError as error:
            self.errors.append(error)
            return fallback

    def location(self, path: KeyPath) -> Location:
        """Where ``path`` (or its nearest ancestor) was set; the root file for a default."""
        return self.origins.nearest(path) or Location(self.root_name)

    def error(self, message: str, path: KeyPath) -> ConfigError:
        location = self.location(path)
        return ConfigError(message, file=location.file, line=location.line)

    def warn(self, category: str, path: KeyPath, message: str) -> None:
        location = self.location(path)
        self.warnings.append(
            Diagnostic(
                level="warning",
                category=category,
                field=dotted(path),
                message=message,
                file=location.file,
                line=location.line,
            )
        )

    def duration(self, value: Any, path: KeyPath) -> float:
        try:
            return parse_duration(value, dotted(path))
        except ConfigError as error:
            raise self.error(error.message, path) from None
