"""``${VAR}`` interpolation of scalar values after parsing (spec config.md §3.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ductile.config.locations import KeyPath
from ductile.config.yaml_core import scalar_value

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Unresolved(str):
    """A string still holding ``${VAR}`` for variables that are not set.

    The marker travels through merging so that only the value that wins the merge is reported,
    and only where a literal ``${…}`` cannot be right.
    """

    missing: tuple[str, ...]

    def __new__(cls, text: str, missing: tuple[str, ...]) -> Unresolved:
        instance = super().__new__(cls, text)
        instance.missing = missing
        return instance


def interpolate_text(text: str, environ: Mapping[str, str]) -> str:
    """Substitute ``${NAME}``; ``$${`` is a literal ``${``; unknown names stay literal."""
    return _substitute(text, environ)[0]


def _substitute(text: str, environ: Mapping[str, str]) -> tuple[str, bool]:
    """The interpolated text, and whether any environment value went into it."""
    missing: list[str] = []
    used = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal used
        name = match.group(1)
        if name is None:
            return "${"
        if name in environ:
            used = True
            return environ[name]
        missing.append(name)
        return match.group(0)

    result = _REFERENCE.sub(substitute, text)
    return (Unresolved(result, tuple(dict.fromkeys(missing))) if missing else result), used


def interpolate(
    value: Any, environ: Mapping[str, str], templates: dict[KeyPath, str] | None = None, path: KeyPath = ()
) -> Any:
    """Interpolate every string scalar in ``value`` (never mapping keys).

    A scalar that is exactly ``${VAR}`` takes the YAML type of the substituted text. Each scalar
    that took an environment value is recorded in ``templates`` (key path -> the text as
    written), so that the value can be kept out of what is shown and logged.
    """
    if isinstance(value, dict):
        return {key: interpolate(item, environ, templates, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ, templates, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        whole = _REFERENCE.fullmatch(value)
        result, used = _substitute(value, environ)
        if used and templates is not None:
            templates[path] = value
        if whole is not None and whole.group(1) is not None and not isinstance(result, Unresolved):
            return scalar_value(result)
        return result
    return value


def find_unresolved(value: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Unresolved]]:
    """Every string in ``value`` that still holds an undefined ``${VAR}``, with its key path."""
    if isinstance(value, Unresolved):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find_unresolved(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_unresolved(item, (*path, index))


def plain(value: Any) -> Any:
    """A copy with every marker string turned back into a plain ``str``."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, Unresolved):
        return str(value)
    return value
