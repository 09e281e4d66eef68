"""Schedule entries: parse and validate ``schedules[]``, and compute slots (scheduler.md §1–5).

Pure: every function takes ``now`` (Unix ns) as input. Cron, ``only_between`` and ``not_on`` use
wall-clock time in the entry's zone. A cron time skipped by a DST jump forward maps to the first
instant after the jump; a wall-clock time that occurs twice maps to its first occurrence.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import croniter

from ductile.formats.durations import DurationError, parse_duration_ns

NS = 1_000_000_000
MINUTE = 60 * NS
CATCH_UP_CAP = 100

_ALIASES = {"hourly": 3600 * NS, "daily": 86400 * NS, "weekly": 7 * 86400 * NS, "monthly": 30 * 86400 * NS}
_WEEKDAYS = {
    "sun": 0, "sunday": 0, "mon": 1, "monday": 1, "tue": 2, "tues": 2, "tuesday": 2, "wed": 3, "wednesday": 3,
    "thu": 4, "thurs": 4, "thursday": 4, "fri": 5, "friday": 5, "sat": 6, "saturday": 6,
}
_CRON_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_ID = re.compile(r"^[^\s:]+$")
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
KNOWN_KEYS = frozenset({
    "id", "every", "cron", "at", "after", "jitter", "catch_up", "if_running", "max_outstanding_polls",
    "only_between", "not_on", "timezone", "command", "payload", "preferred_window",
})


class Invalid(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def host_timezone(environ: dict[str, str] | None = None) -> tuple[str, bool]:
    """The host's IANA zone (``TZ``, else ``/etc/localtime``); ``("UTC", False)`` when unknown."""
    env = os.environ if environ is None else environ
    tz = env.get("TZ", "").lstrip(":")
    candidates = [tz] if tz else []
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        try:
            ZoneInfo(name)
            return name, True
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return "UTC", False


class Spec(msgspec.Struct, frozen=True, kw_only=True):
    """One validated entry; ``invalid_reason`` set means ``paused_invalid``."""

    plugin: str
    id: str
    index: int
    command: str = "poll"
    kind: str = "unknown"  # every | cron | at | after | unknown
    every: int = 0
    cron: str = ""
    at: int = 0
    after: int = 0
    jitter: int = 0
    catch_up: str = "skip"
    if_running: str = "skip"
    max_outstanding: int = 1
    window: tuple[int, int] | None = None  # minutes since midnight, [start, end)
    not_on: frozenset[int] = frozenset()
    timezone: str = "UTC"
    payload: dict[str, Any] = {}
    invalid_reason: str | None = None
    invalid_detail: str | None = None

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None

    @property
    def plan_key(self) -> str:
        """Changing any of these re-plans the entry (scheduler.md §9)."""
        raw = f"{self.kind}|{self.every}|{self.cron}|{self.at}|{self.after}|{self.timezone}|{self.command}"
        return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()

    @property
    def dedupe_key(self) -> str:
        return f"{self.plugin}:{self.command}:{self.id}"

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _weekday(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        if 0 <= value <= 7:
            return value % 7
        raise ValueError
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _WEEKDAYS:
            return _WEEKDAYS[key]
        if key.isdigit() and 0 <= int(key) <= 7:
            return int(key) % 7
    raise ValueError


def parse_entry(
    plugin: str, index: int, raw: Any, commands: set[str], default_tz: str, plugin_max_outstanding: int = 1
) -> tuple[Spec, list[str]]:
    """Validate one entry. Never raises: an invalid entry comes back with ``invalid_reason``.

    Returns the spec and warnings (unknown keys, ignored settings).
    """
    warnings: list[str] = []
    entry = raw if isinstance(raw, dict) else {}
    sid = entry.get("id", "default")
    sid = sid if isinstance(sid, str) else str(sid)
    command = entry.get("command", "poll")
    base: dict[str, Any] = {"plugin": plugin, "id": sid, "index": index,
                            "command": command if isinstance(command, str) else str(command)}
    kinds = [k for k in ("every", "cron", "at", "after") if k in entry]
    if len(kinds) == 1:
        base["kind"] = kinds[0]
    tz_raw = entry.get("timezone", default_tz)
    base["timezone"] = tz_raw if isinstance(tz_raw, str) else default_tz
    tz_invalid = not isinstance(tz_raw, str)
    try:
        if not isinstance(raw, dict):
            raise Invalid("invalid_schedule_config", "schedule entry must be a mapping")
        for key in entry:
            if key not in KNOWN_KEYS:
                warnings.append(f'plugin "{plugin}": schedules[{index}].{key} is not a known key (ignored)')
        if "preferred_window" in entry:
            warnings.append(f'plugin "{plugin}": schedules[{index}].preferred_window is not enforced')
        if not sid or not _ID.match(sid):
            raise Invalid("invalid_schedule_config", f'id "{sid}" must be non-empty without ":" or whitespace')
        if len(kinds) != 1:
            raise Invalid("invalid_schedule_config", "set exactly one of every, cron, at or after")
        try:
            if tz_invalid:
                raise ValueError(tz_raw)
            zone = ZoneInfo(base["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid("invalid_schedule_config", f'unknown timezone "{tz_raw}"') from None
        kind = kinds[0]
        value = entry[kind]
        if kind == "every":
            alias = _ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
            try:
                base["every"] = alias if alias is not None else parse_duration_ns(value)
            except DurationError as exc:
                raise Invalid("invalid_schedule_config", f"every: {exc}") from None
            if base["every"] <= 0:
                raise Invalid("invalid_schedule_config", "every must be > 0")
        elif kind == "after":
            try:
                base["after"] = parse_duration_ns(value)
            except DurationError as exc:
                raise Invalid("invalid_schedule_config", f"after: {exc}") from None
            if base["after"] <= 0:
                raise Invalid("invalid_schedule_config", "after must be > 0")
        elif kind == "cron":
            base["cron"] = _check_cron(value)
        else:
            base["at"] = _parse_at(value, zone)
        if "jitter" in entry:
            try:
                base["jitter"] = parse_duration_ns(entry["jitter"])
            except DurationError as exc:
                raise Invalid("invalid_schedule_config", f"jitter: {exc}") from None
        catch_up = entry.get("catch_up", "skip")
        if catch_up not in ("skip", "run_once", "run_all"):
            raise Invalid("invalid_schedule_config", f'catch_up must be skip, run_once or run_all (got "{catch_up}")')
        base["catch_up"] = catch_up
        if_running = entry.get("if_running", "skip")
        if if_running not in ("skip", "queue", "cancel"):
            raise Invalid("invalid_schedule_config", f'if_running must be skip, queue or cancel (got "{if_running}")')
        base["if_running"] = if_running
        mop = entry.get("max_outstanding_polls", plugin_max_outstanding)
        if isinstance(mop, bool) or not isinstance(mop, int) or mop < 1:
            raise Invalid("invalid_schedule_config", "max_outstanding_polls must be >= 1")
        base["max_outstanding"] = mop
        if "only_between" in entry:
            base["window"] = _parse_window(entry["only_between"])
        if "not_on" in entry:
            days = entry["not_on"]
            if not isinstance(days, list):
                days = [days]
            try:
                base["not_on"] = frozenset(_weekday(d) for d in days)
            except ValueError:
                raise Invalid("invalid_schedule_config", f"not_on: unknown weekday in {days!r}") from None
        payload = entry.get("payload", {})
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise Invalid("invalid_schedule_config", "payload must be a mapping")
        base["payload"] = payload
        if base["command"] == "handle":
            raise Invalid("scheduled_handle_disallowed", "handle cannot be scheduled")
        if base["command"] not in commands:
            raise Invalid("command_not_supported", f'command "{base["command"]}" is not declared by the plugin manifest')
        if kind in ("at", "after") and "catch_up" in entry:
            warnings.append(f'plugin "{plugin}": schedules[{index}] catch_up is ignored for one-shot entries')
        if kind == "every" and base.get("jitter", 0) >= base["every"]:
            warnings.append(f'plugin "{plugin}": schedules[{index}] jitter is not shorter than the every interval')
        if if_running == "queue" and mop <= 1:
            warnings.append(f'plugin "{plugin}": schedules[{index}] if_running: queue with max_outstanding_polls <= 1 behaves like skip')
    except Invalid as exc:
        return Spec(**base, invalid_reason=exc.reason, invalid_detail=exc.detail), warnings
    return Spec(**base), warnings


def _check_cron(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("invalid_schedule_config", "cron must be a 5-field expression")
    expr = value.strip()
    if expr.lower() in _CRON_DESCRIPTORS:
        return expr.lower()
    if len(expr.split()) != 5:
        raise Invalid("invalid_schedule_config", f'cron "{expr}" must have 5 fields')
    if not croniter.is_valid(expr):
        raise Invalid("invalid_schedule_config", f'invalid cron expression "{expr}"')
    return expr


def _parse_at(value: Any, zone: ZoneInfo) -> int:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise Invalid("invalid_schedule_config", f'at "{value}" is not an RFC3339 timestamp') from None
    else:
        raise Invalid("invalid_schedule_config", f'at "{value}" is not an RFC3339 timestamp')
    if dt.tzinfo is None:
        return instant_for_wall(dt, zone)
    return _to_ns(dt)


def _parse_window(value: Any) -> tuple[int, int]:
    m = _WINDOW.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise Invalid("invalid_schedule_config", f'only_between "{value}" must be "HH:MM-HH:MM"')
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise Invalid("invalid_schedule_config", f'only_between "{value}" has an invalid time')
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise Invalid("invalid_schedule_config", f'only_between "{value}" is empty (start equals end)')
    return start, end


# --- wall clock ------------------------------------------------------------------------------------


def _to_ns(dt: datetime) -> int:
    seconds = int(dt.replace(microsecond=0).timestamp())
    return seconds * NS + dt.microsecond * 1000


def local(now: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(now // NS, UTC).replace(microsecond=(now % NS) // 1000).astimezone(zone)


def instant_for_wall(naive: datetime, zone: ZoneInfo) -> int:
    """The first instant whose wall-clock time in ``zone`` is ``naive`` (or, in a DST gap, the
    first instant after the gap)."""
    naive = naive.replace(tzinfo=None)
    u = min(_to_ns(naive.replace(tzinfo=zone, fold=0)), _to_ns(naive.replace(tzinfo=zone, fold=1)))
    for _ in range(24 * 60):
        if local(u, zone).replace(tzinfo=None) >= naive:
            return u
        u += MINUTE - (u % MINUTE if u % MINUTE else 0)
    return u


def next_cron(expr: str, zone: ZoneInfo, after: int) -> int:
    """First cron match strictly after the instant ``after``."""
    wall = local(after, zone).replace(tzinfo=None)
    it = croniter(expr, wall)
    for _ in range(10_000):
        candidate = instant_for_wall(it.get_next(datetime), zone)
        if candidate > after:
            return candidate
    raise ValueError(f"cron {expr!r} has no next match")


def in_window(spec: Spec, now: int) -> tuple[bool, str | None]:
    """Whether ``now`` passes ``not_on`` and ``only_between``; else the skip reason."""
    if not spec.not_on and spec.window is None:
        return True, None
    t = local(now, spec.zone())
    if spec.not_on and (t.weekday() + 1) % 7 in spec.not_on:
        return False, "outside_day_constraint"
    if spec.window is not None:
        minute = t.hour * 60 + t.minute
        start, end = spec.window
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        if not inside:
            return False, "outside_time_window"
    return True, None


def first_slot(spec: Spec, now: int, first_seen: int) -> int:
    match spec.kind:
        case "every":
            return now
        case "cron":
            return next_cron(spec.cron, spec.zone(), now - now % MINUTE - 1)
        case "at":
            return spec.at
        case "after":
            return first_seen + spec.after
    raise ValueError(f"no slot for kind {spec.kind}")


def next_slot(spec: Spec, now: int) -> int | None:
    """The slot after one fired or was dropped at ``now``; None for one-shots (exhausted)."""
    if spec.kind == "every":
        return now + spec.every
    if spec.kind == "cron":
        return next_cron(spec.cron, spec.zone(), now)
    return None


def missed_slots(spec: Spec, stored_slot: int, now: int, tick: int) -> tuple[list[int], int, int]:
    """Slots ``<= now - tick`` from ``stored_slot`` on: (the latest 100, how many in all, the
    first slot ``> now`` keeping the phase)."""
    limit = now - tick
    if stored_slot > limit:
        return [], 0, stored_slot
    if spec.kind == "every":
        count = (limit - stored_slot) // spec.every + 1
        first_kept = max(0, count - CATCH_UP_CAP)
        slots = [stored_slot + k * spec.every for k in range(first_kept, count)]
        k = (now - stored_slot) // spec.every + 1
        return slots, count, stored_slot + k * spec.every
    zone = spec.zone()
    slots: list[int] = []
    count = 0
    slot = stored_slot
    while slot <= limit:
        count += 1
        slots.append(slot)
        if len(slots) > CATCH_UP_CAP:
            slots.pop(0)
        slot = next_cron(spec.cron, zone, slot)
    after = slot
    while after <= now:
        after = next_cron(spec.cron, zone, after)
    return slots, count, after


def jitter_ns(spec: Spec, u: float) -> int:
    return int(u * spec.jitter) if spec.jitter > 0 else 0


def rfc3339_seconds(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
