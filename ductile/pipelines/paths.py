"""Dotted paths into JSON values: ``payload.a.b``, ``context.repo.path``, ``payload.items.0.id``.

A path has at least two segments and starts with a root the caller allows (conditions allow
``payload``/``context``/``config``, baggage sources ``payload``/``context``). A numeric segment
indexes a list. Resolving never fails: walking stops at a missing key, an index out of range or a
scalar, and the path is then *absent* (pipelines.md §6).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ductile.pipelines.values import json_type

_INDEX = re.compile(r"[0-9]+")
_WHITESPACE = re.compile(r"\s")


class PathError(ValueError):
    """A path refused at load time. The message names the path but carries no pointer prefix."""

    def __init__(self, problem: str, *, root: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.root = root  # set for an unknown root, so a caller can word its own refusal


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    segments: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.segments[0]

    def __str__(self) -> str:
        return self.text


def parse_path(raw: Any, *, roots: Collection[str] | None = None, min_segments: int = 2) -> Path:
    """Validate a dotted path. ``roots=None`` accepts any first segment."""
    if not isinstance(raw, str):
        raise PathError(f"path must be a string, got {json_type(raw)}")
    if not raw:
        raise PathError("path must not be empty")
    segments = tuple(raw.split("."))
    if any(not s for s in segments):
        raise PathError(f'path "{raw}" has an empty segment')
    bad = next((s for s in segments if _WHITESPACE.search(s)), None)
    if bad is not None:
        raise PathError(f'path "{raw}" has whitespace in segment "{bad}"')
    if roots is not None and segments[0] not in roots:
        allowed = ", ".join(sorted(roots))
        raise PathError(
            f'unknown root "{segments[0]}" in path "{raw}" (allowed: {allowed})', root=segments[0]
        )
    if len(segments) < min_segments:
        raise PathError(f'path "{raw}" must have at least {min_segments} segments')
    return Path(raw, segments)


def resolve(root_values: Mapping[str, Any], path: Path | str) -> tuple[bool, Any]:
    """``(True, value)`` when the path is present (its value may be ``None``), else ``(False, None)``."""
    segments = path.segments if isinstance(path, Path) else tuple(path.split("."))
    if segments[0] not in root_values:
        return False, None
    current = root_values[segments[0]]
    for segment in segments[1:]:
        found, current = step(current, segment)
        if not found:
            return False, None
    return True, current


def step(value: Any, segment: str) -> tuple[bool, Any]:
    """One walk step: a key of an object, or a numeric index into a list."""
    if isinstance(value, Mapping):
        return (True, value[segment]) if segment in value else (False, None)
    # the length check keeps int() away from huge digit strings (and Python's digit limit)
    if isinstance(value, list | tuple) and _INDEX.fullmatch(segment) and len(segment) <= 18:
        index = int(segment)
        return (True, value[index]) if index < len(value) else (False, None)
    return False, None
