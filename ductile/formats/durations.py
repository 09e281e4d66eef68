"""The one duration grammar (config.md §3.4, scheduler.md §2), used by config, schedules and the CLI.

    duration := zero | "+"? (group+ | number ("d" | "w"))
    group    := number ("ns" | "us" | "µs" | "ms" | "s" | "m" | "h")
    number   := digits ("." digits?)? | "." digits      (digits: ASCII 0-9)
    zero     := any bare number equal to 0 ("0", 0, "0.0"): its unit cannot matter

Decisions where the two specs are silent or differ, pinned by tests/unit/formats:
- ``d`` and ``w`` only as a whole value (``30d``, ``1.5d``, ``2w``), never mixed with groups:
  scheduler.md §2 says so explicitly and config.md §3.4 only shows whole examples, so ``1d12h``
  is refused everywhere (write ``36h``).
- Numbers and the leading ``+`` follow Go's ``time.ParseDuration``, the model of config.md's
  grammar: ``.5s``, ``1.s`` and ``+5m`` parse.
- A negative duration parses far enough to be refused as negative, never as malformed.
- Any other bare number is refused as missing its unit, so ``timeout: 30`` is never silently read
  as 30 nanoseconds or 30 hours.

The value is exact integer nanoseconds (decimal arithmetic, no float rounding on the way).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

NS_PER_SECOND = 1_000_000_000

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "h": 3600 * NS_PER_SECOND,
    "d": 86400 * NS_PER_SECOND,
    "w": 7 * 86400 * NS_PER_SECOND,
}
_NUMBER_TEXT = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # ASCII digits only, as in Go (``\d`` takes any script's)
_GROUP = re.compile(rf"({_NUMBER_TEXT})(ns|us|µs|ms|s|m|h)")
_WHOLE_DAYS = re.compile(rf"({_NUMBER_TEXT})([dw])")
_BARE_NUMBER = re.compile(rf"[-+]?{_NUMBER_TEXT}")


class DurationError(ValueError):
    """A value outside the grammar. ``str()`` is ``invalid duration "<value>"[: <reason>]``;
    callers prefix the key they were reading (``service.tick_interval: invalid duration …``)."""

    def __init__(self, value: object, reason: str | None = None) -> None:
        quoted = '"' + str(value).replace('"', '\\"') + '"'
        super().__init__(f"invalid duration {quoted}" + (f": {reason}" if reason else ""))
        self.value = value
        self.reason = reason


def parse_duration_ns(value: object) -> int:
    """``"300ms"``, ``"1h30m"``, ``"1.5d"``, ``"2w"``, ``0`` … → integer nanoseconds (≥ 0)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DurationError(value)
    text = str(value).strip()
    if isinstance(value, int | float) or _BARE_NUMBER.fullmatch(text):
        if _BARE_NUMBER.fullmatch(text) and Decimal(text) == 0:
            return 0
        if text.startswith("-"):
            raise DurationError(text, "must not be negative")
        raise DurationError(text, "missing unit")
    if text.startswith("-"):
        if _magnitude_ns(text[1:]) is not None:
            raise DurationError(text, "must not be negative")
        raise DurationError(text)
    nanoseconds = _magnitude_ns(text.removeprefix("+"))
    if nanoseconds is None:
        raise DurationError(text)
    return nanoseconds


def parse_duration_seconds(value: object) -> float:
    """The same grammar, in seconds (the unit of the config model)."""
    return parse_duration_ns(value) / NS_PER_SECOND


def _magnitude_ns(body: str) -> int | None:
    whole = _WHOLE_DAYS.fullmatch(body)
    if whole is not None:
        return _times(whole.group(1), whole.group(2))
    if not body:
        return None
    total = 0
    position = 0
    while position < len(body):
        group = _GROUP.match(body, position)
        if group is None:
            return None
        part = _times(group.group(1), group.group(2))
        if part is None:
            return None
        total += part
        position = group.end()
    return total


def _times(number: str, unit: str) -> int | None:
    try:
        return int(Decimal(number) * _NS_PER_UNIT[unit])
    except InvalidOperation:
        return None


def format_duration(seconds: float) -> str:
    """The shortest form that parses back, Go style: ``"5m"``, ``"1h30m"``, ``"300ms"``, ``"0s"``."""
    nanoseconds = round(Decimal(str(seconds)) * NS_PER_SECOND)
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
