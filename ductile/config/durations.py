"""Duration and byte-size values (spec config.md §3.4)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from ductile.config.errors import ConfigError

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
    "w": 7 * 86400 * 1_000_000_000,
}
_COMPONENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")

_BYTE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1024,
    "mb": 1024**2,
    "gb": 1024**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_BYTE_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")


def parse_duration(text: str | int | float, key: str) -> float:
    """Parse ``"300ms"``, ``"1h30m"``, ``"2w"`` … into seconds.

    ``0`` needs no unit (its unit cannot matter); any other bare number is refused so that
    ``timeout: 30`` is never silently read as 30 nanoseconds or 30 hours.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ConfigError(f"{key}: invalid duration {_quote(text)}")
    raw = str(text).strip()
    if isinstance(text, int | float) or _NUMBER.fullmatch(raw):
        if _NUMBER.fullmatch(raw) and float(raw) == 0:
            return 0.0
        if raw.startswith("-"):
            raise ConfigError(f"{key}: invalid duration {_quote(raw)}: must not be negative")
        raise ConfigError(f"{key}: invalid duration {_quote(raw)}: missing unit")
    body = raw
    if body.startswith("-"):
        if _parse_components(body[1:]) is not None:
            raise ConfigError(f"{key}: invalid duration {_quote(raw)}: must not be negative")
        raise ConfigError(f"{key}: invalid duration {_quote(raw)}")
    body = body.removeprefix("+")
    nanoseconds = _parse_components(body)
    if nanoseconds is None:
        raise ConfigError(f"{key}: invalid duration {_quote(raw)}")
    return nanoseconds / 1_000_000_000


def _parse_components(body: str) -> int | None:
    if not body:
        return None
    total = Decimal(0)
    position = 0
    while position < len(body):
        match = _COMPONENT.match(body, position)
        if match is None:
            return None
        try:
            total += Decimal(match.group(1)) * _NS_PER_UNIT[match.group(2)]
        except InvalidOperation:
            return None
        position = match.end()
    return int(total)


def format_duration(seconds: float) -> str:
    """The shortest form that parses back, Go style: ``"5m"``, ``"1h30m"``, ``"300ms"``, ``"0s"``."""
    nanoseconds = round(Decimal(str(seconds)) * 1_000_000_000)
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    nanoseconds = abs(nanoseconds)
    if nanoseconds < _NS_PER_UNIT["s"]:
        return sign + _sub_second(nanoseconds)
    hours, rest = divmod(nanoseconds, _NS_PER_UNIT["h"])
    minutes, rest = divmod(rest, _NS_PER_UNIT["m"])
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        parts.append(_decimal_text(Decimal(rest) / _NS_PER_UNIT["s"]) + "s")
    return sign + "".join(parts)


def _sub_second(nanoseconds: int) -> str:
    for unit in ("ms", "us"):
        if nanoseconds >= _NS_PER_UNIT[unit]:
            return _decimal_text(Decimal(nanoseconds) / _NS_PER_UNIT[unit]) + unit
    return f"{nanoseconds}ns"


def _decimal_text(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


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
