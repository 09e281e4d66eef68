"""Baggage: durable context claims, merged down a pipeline instance (pipelines.md §7).

Two forms: a mapping ``{dest.path: "payload.x" | "context.y"}``, and a bulk import
``{from: payload.meta, namespace: whisper}`` (``from: payload`` takes the whole payload). Claims
are taken from the arriving event payload and the parent context, then deep-merged over the
parent: a descendant may add paths, or repeat one with the same value, but never change one.
The ``ductile`` namespace and ``ductile_*`` destinations are Ductile's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ductile.pipelines.errors import LoadProblems
from ductile.pipelines.paths import Path, PathError, parse_path, resolve
from ductile.pipelines.values import json_copy, json_equal, json_type

CONTEXT_CAP = 1_048_576
SOURCE_ROOTS = frozenset({"payload", "context"})
RESERVED_NAMESPACE = "ductile"
RESERVED_PREFIX = "ductile_"

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHOLE_PAYLOAD = Path("payload", ("payload",))


class BaggageSpecError(LoadProblems):
    """A ``baggage:`` refused at load; one ``baggage: ...`` problem per line."""


class BaggageError(ValueError):
    """A claim refused at dispatch: a missing source, or a change to an inherited value."""


@dataclass(frozen=True, slots=True)
class Claim:
    destination: tuple[str, ...]
    source: Path


@dataclass(frozen=True, slots=True)
class BulkClaim:
    namespace: tuple[str, ...]
    source: Path


@dataclass(frozen=True, slots=True)
class BaggageSpec:
    entries: tuple[Claim, ...] | BulkClaim

    def claims(self, payload: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        """The nested claims this step makes, read from the arriving payload and parent context."""
        scope = {"payload": payload, "context": context}
        out: dict[str, Any] = {}
        if isinstance(self.entries, BulkClaim):
            bulk = self.entries
            value = _source(scope, bulk.source)
            if not isinstance(value, Mapping):
                raise BaggageError(f'baggage: from "{bulk.source}" must be an object, got {json_type(value)}')
            _put(out, bulk.namespace, json_copy(value))
            return out
        for claim in self.entries:
            _put(out, claim.destination, json_copy(_source(scope, claim.source)))
        return out


def compile_baggage(raw: Any) -> BaggageSpec:
    """Validate a ``baggage:`` map; ``BaggageSpecError`` lists every problem found."""
    if not isinstance(raw, Mapping):
        raise BaggageSpecError(f"baggage: must be a map, got {json_type(raw)}")
    if "from" in raw:
        return _compile_bulk(raw)
    problems: list[str] = []
    claims: list[Claim] = []
    for dest, src in raw.items():
        destination = _destination(dest, problems)
        source = _source_path(src, f'baggage: source of "{dest}": ', problems)
        if destination is not None and source is not None:
            claims.append(Claim(destination, source))
    # a destination inside another one would make the two claims fight over one object
    for a in claims:
        for b in claims:
            if (
                len(a.destination) < len(b.destination)
                and b.destination[: len(a.destination)] == a.destination
            ):
                problems.append(
                    f'baggage: destinations "{_dotted(a.destination)}" and "{_dotted(b.destination)}" overlap'
                )
    if problems:
        raise BaggageSpecError(problems)
    return BaggageSpec(tuple(claims))


def merge_context(parent: Mapping[str, Any], claims: Mapping[str, Any]) -> dict[str, Any]:
    """``parent`` with ``claims`` deep-merged in; changing an inherited value is a ``BaggageError``."""
    merged: dict[str, Any] = json_copy(parent)  # the result never aliases the stored parent record
    _merge_into(merged, claims, ())
    return merged


def context_size(ctx: Mapping[str, Any]) -> int:
    """Bytes of the context as compact UTF-8 JSON, the measure of the ``CONTEXT_CAP``."""
    return len(msgspec.json.encode(ctx))


def _compile_bulk(raw: Mapping[str, Any]) -> BaggageSpec:
    problems: list[str] = []
    extra = [k for k in raw if k not in ("from", "namespace")]
    if extra:
        names = ", ".join(f'"{k}"' for k in extra)
        problems.append(f"baggage: the bulk form takes exactly from and namespace (unexpected {names})")
    namespace: tuple[str, ...] | None = None
    if "namespace" not in raw:
        problems.append("baggage: namespace is required with from")
    else:
        namespace = _destination(raw["namespace"], problems, what="namespace")
    src = raw["from"]
    source = _WHOLE_PAYLOAD if src == "payload" else _source_path(src, "baggage: from: ", problems)
    if problems or namespace is None or source is None:
        raise BaggageSpecError(problems)
    return BaggageSpec(BulkClaim(namespace, source))


def _destination(raw: Any, problems: list[str], what: str = "destination") -> tuple[str, ...] | None:
    if not isinstance(raw, str):
        problems.append(f"baggage: {what} must be a string, got {json_type(raw)}")
        return None
    segments = tuple(raw.split("."))
    bad = next((s for s in segments if not _SEGMENT.fullmatch(s)), None)
    if bad is not None:
        problems.append(
            f'baggage: invalid {what} "{raw}" (segment "{bad}" must match [A-Za-z_][A-Za-z0-9_]*)'
        )
        return None
    if segments[0] == RESERVED_NAMESPACE:
        problems.append(f'baggage: {what} "{raw}" is in the reserved ductile namespace')
        return None
    if segments[0].startswith(RESERVED_PREFIX):
        problems.append(f'baggage: {what} "{raw}" uses the reserved ductile_ prefix')
        return None
    return segments


def _source_path(raw: Any, prefix: str, problems: list[str]) -> Path | None:
    try:
        return parse_path(raw, roots=SOURCE_ROOTS)
    except PathError as e:
        problems.append(f"{prefix}{e.problem}")
        return None


def _source(scope: Mapping[str, Any], path: Path) -> Any:
    if path.segments == ("payload",):
        return scope["payload"]
    found, value = resolve(scope, path)
    if not found:
        raise BaggageError(f'baggage: source path "{path}" not found')
    return value


def _put(target: dict[str, Any], segments: tuple[str, ...], value: Any) -> None:
    for segment in segments[:-1]:
        target = target.setdefault(segment, {})
    target[segments[-1]] = value


def _merge_into(merged: dict[str, Any], claims: Mapping[str, Any], at: tuple[str, ...]) -> None:
    for key, value in claims.items():
        path = (*at, key)
        if key not in merged:
            merged[key] = json_copy(value)
        elif isinstance(merged[key], dict) and isinstance(value, Mapping):
            _merge_into(merged[key], value, path)
        elif not json_equal(merged[key], value):
            raise BaggageError(f'baggage: path "{_dotted(path)}" is immutable (inherited value differs)')


def _dotted(segments: tuple[str, ...]) -> str:
    return ".".join(segments)
