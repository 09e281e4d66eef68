"""Duration and byte-size values in config (spec config.md §3.4); the duration grammar itself is shared."""

from __future__ import annotations

import re
from decimal import Decimal

from ductile.config.errors import ConfigError
from ductile.formats.durations import DurationError, format_duration, parse_duration_seconds

__all__ = ["format_duration", "parse_byte_size", "parse_duration"]

_BYTE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1024,
    "mb": 1024**2,
    "gb": 1024**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_BYTE_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)")  # ASCII digits, as in durations


def parse_duration(text: str | int | float, key: str) -> float:
    """Seconds from the one duration grammar (``ductile.formats.durations``), naming ``key`` on error."""
    try:
        return parse_duration_seconds(text)
    except DurationError as error:
        raise ConfigError(f"{key}: {error}") from None


def parse_byte_size(value: object, key: str) -> int:
    """Integer bytes, or a number with ``B``/``KB``/``MB``/``GB`` (1024-based; ``KiB``… accepted)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: invalid byte size {_quote(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key}: invalid byte size {_quote(value)}: must not be negative")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key}: invalid byte size {_quote(value)}")
    text = value.strip()
    if text.startswith("-"):
        raise ConfigError(f"{key}: invalid byte size {_quote(value)}: must not be negative")
    match = _BYTE_SIZE.fullmatch(text)
    if match is None:
        raise ConfigError(f"{key}: invalid byte size {_quote(value)}")
    number, unit = match.groups()
    if unit == "" and "." in number:
        raise ConfigError(f"{key}: invalid byte size {_quote(value)}")
    multiplier = _BYTE_UNITS.get(unit.lower() or "b")
    if multiplier is None:
        raise ConfigError(f"{key}: invalid byte size {_quote(value)}: unknown unit {unit!r}")
    return int(Decimal(number) * multiplier)


def _quote(value: object) -> str:
    return '"' + str(value).replace('"', '\\"') + '"'
