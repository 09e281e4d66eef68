"""Time representations shared by events, projections and wire formats.

Events carry instants as integer Unix nanoseconds (UTC). Read models store the fixed-width text
form so that text order equals time order; the API speaks RFC3339 with a ``Z`` suffix.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

NS = 1_000_000_000


def now_ns() -> int:
    return time.time_ns()


# The last instant and the last second formatted, each one tuple replaced whole, so a thread never
# reads one instant's text with another's key. Projections format the same instant several times
# in a row (a job's enqueue: its queue row, its ledger row, its transition) and the same second
# many times; strftime is the costly part.
_last_instant: tuple[int | None, str] = (None, "")
_last_second: tuple[int | None, str] = (None, "")


def sql_ts(ns: int | None) -> str | None:
    """Fixed-width ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` used in SQL read models."""
    global _last_instant, _last_second
    if ns is None:
        return None
    last = _last_instant
    if last[0] == ns:
        return last[1]
    seconds, rem = divmod(ns, NS)
    second = _last_second
    if second[0] != seconds:
        second = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    text = f"{second[1]}.{rem // 1000:06d}Z"
    _last_instant = (ns, text)
    return text


# Seconds rfc3339 has formatted, by Unix second. A plugin's spawn formats now and its deadline (a
# timeout later) in turn, so one remembered second would be replaced at every call; strftime (and
# decoding its text through the locale) is most of the cost. Bounded: cleared when full.
_rfc3339_seconds: dict[int, str] = {}
_RFC3339_SECONDS_HELD = 64


def rfc3339(ns: int | None) -> str | None:
    """RFC3339 UTC with at most 6 fractional digits and trailing zeros trimmed."""
    if ns is None:
        return None
    seconds, rem = divmod(ns, NS)
    base = _rfc3339_seconds.get(seconds)
    if base is None:
        if len(_rfc3339_seconds) >= _RFC3339_SECONDS_HELD:
            _rfc3339_seconds.clear()
        base = _rfc3339_seconds[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    micros = rem // 1000
    if micros == 0:
        return base + "Z"
    return f"{base}.{micros:06d}".rstrip("0") + "Z"


def parse_rfc3339(text: str) -> int:
    """Parse an RFC3339 timestamp to Unix nanoseconds; raises ValueError on bad input."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    dt = datetime.fromisoformat(raw)
    if dt.tzinfo is None:
        raise ValueError("timestamp needs a timezone")
    dt = dt.astimezone(UTC)
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * NS + dt.microsecond * 1000


def rfc3339_seconds(ns: int) -> str:
    """RFC3339 UTC truncated to whole seconds: the vault document's timestamps (vault.md §2)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // NS))
