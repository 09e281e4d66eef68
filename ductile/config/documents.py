"""One parsed config file: its data, the line of every key, and how messages name it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ductile.config.errors import ConfigError
from ductile.config.locations import KeyPath, Location
from ductile.config.plaintext import ConfigKeys, read_plaintext
from ductile.config.yaml_core import parse_yaml


class Document(msgspec.Struct):
    path: Path  # absolute
    name: str  # how messages name the file: relative to the config dir when inside it
    data: dict[str, Any]
    lines: dict[KeyPath, int]
    is_root: bool = False
    children: dict[KeyPath, list[KeyPath]] = {}  # index over ``lines``; rebuilt by reindex()
    templates: dict[KeyPath, str] = {}  # scalars that took an environment value -> the text as written

    def reindex(self) -> None:
        """Rebuild the parent -> children index after ``lines`` changed."""
        children: dict[KeyPath, list[KeyPath]] = {}
        for path in self.lines:
            if path:
                children.setdefault(path[:-1], []).append(path)
        self.children = children

    def subtree(self, prefix: KeyPath) -> Iterator[KeyPath]:
        """``prefix`` (if it has a line) and every key path below it."""
        pending = [prefix]
        while pending:
            path = pending.pop()
            if path in self.lines:
                yield path
            pending.extend(self.children.get(path, ()))

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path`` or of its nearest ancestor present in this file."""
        for size in range(len(path), -1, -1):
            line = self.lines.get(path[:size])
            if line is not None:
                return line
        return None

    def location(self, path: KeyPath) -> Location:
        return Location(self.name, self.line(path), self.templates.get(path))

    def error(self, message: str, path: KeyPath) -> ConfigError:
        return ConfigError(message, file=self.name, line=self.line(path))


def read_document(
    path: Path, config_dir: Path, *, is_root: bool = False, keys: ConfigKeys | None = None
) -> Document:
    name = display_name(path, config_dir)
    value, lines = parse_yaml(read_plaintext(path, keys), name)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError("expected a mapping of keys at the top level", file=name, line=1)
    document = Document(path=path, name=name, data=value, lines=lines, is_root=is_root)
    document.reindex()
    return document


def display_name(path: Path, config_dir: Path) -> str:
    """``conf.d/plugins.yaml`` inside the config dir, the absolute path outside it."""
    try:
        return path.relative_to(config_dir).as_posix()
    except ValueError:
        return str(path)
