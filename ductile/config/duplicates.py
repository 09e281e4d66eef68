"""Names that must be unique once every file is merged (spec config.md §2)."""

from __future__ import annotations

from typing import Any

from ductile.config.errors import ConfigError
from ductile.config.locations import KeyPath, Origins

# (list path, identifying field, how the message names an item)
UNIQUE_ITEMS: tuple[tuple[KeyPath, str, str], ...] = (
    (("pipelines",), "name", "pipeline"),
    (("webhooks", "endpoints"), "path", "webhook path"),
    (("instances",), "name", "relay instance"),
    (("remote_ingress", "peers"), "name", "relay peer"),
)


def duplicate_names(merged: dict[str, Any], origins: Origins) -> list[ConfigError]:
    """One error per repeated name, at the second definition's ``file:line``."""
    errors: list[ConfigError] = []
    for path, field, label in UNIQUE_ITEMS:
        items = _lookup(merged, path)
        if not isinstance(items, list):
            continue
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get(field), str):
                continue
            name = item[field]
            if name in first_index:
                first = _file(origins, (*path, first_index[name]))
                second = _file(origins, (*path, index))
                where = origins.nearest((*path, index))
                errors.append(ConfigError(f'{label} "{name}" is defined twice ({first}, {second})',
                                          file=where.file if where else None, line=where.line if where else None))
                continue
            first_index[name] = index
    return errors


def _lookup(merged: dict[str, Any], path: KeyPath) -> Any:
    value: Any = merged
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _file(origins: Origins, path: KeyPath) -> str:
    location = origins.nearest(path)
    return location.file if location is not None else "?"
