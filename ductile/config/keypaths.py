"""The path grammar of ``config get|set|show`` (config.md §9): ``a.b.c``, a list index ``a.b[0]``,
and ``plugin:<name>.<field>`` for ``plugins.<name>.<field>``; and looking one up in a document."""

from __future__ import annotations

import re
from typing import Any

from ductile.config.locations import KeyPath, dotted

_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class KeyPathError(ValueError):
    """A path that does not parse, or names nothing; the message is for the user."""


def parse_key_path(text: str) -> KeyPath:
    """``"plugins.echo.schedules[0].every"`` -> ``("plugins", "echo", "schedules", 0, "every")``."""
    body = text.strip()
    prefix: KeyPath = ()
    if body.startswith("plugin:"):
        name, _, rest = body.removeprefix("plugin:").partition(".")
        if not name:
            raise KeyPathError(f'invalid path "{text}"')
        prefix, body = ("plugins", name), rest
        if not body:
            return prefix
    path: list[str | int] = list(prefix)
    for part in body.split("."):
        match = _PART.fullmatch(part)
        if match is None:
            raise KeyPathError(f'invalid path "{text}"')
        path.append(match.group(1))
        path.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(path)


def lookup(document: Any, path: KeyPath) -> Any:
    """The value at ``path``; a missing step raises KeyPathError naming what its parent has."""
    value = document
    for depth, part in enumerate(path):
        if (isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value)) or (isinstance(part, str) and isinstance(value, dict) and part in value):
            value = value[part]
        else:
            raise KeyPathError(missing_message(path, path[:depth], value))
    return value


def missing_message(path: KeyPath, parent: KeyPath, value: Any) -> str:
    """``no such key "plugins.echo.enabeld" (plugins.echo has: config, enabled, schedules)``."""
    where = dotted(parent) or "the config"
    if isinstance(value, dict):
        has = ", ".join(sorted(str(k) for k in value)) or "no keys"
    elif isinstance(value, list):
        has = f"{len(value)} item(s)"
    else:
        has = "no keys"
    return f'no such key "{dotted(path)}" ({where} has: {has})'
