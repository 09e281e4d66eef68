"""Properties of slot computation and the due-entry gates (scheduler.md §2, §4, §5, §7) on a fake clock.

For any valid ``every``/``cron`` entry, in any zone (DST zones, half-hour offsets, midnight changes)
and at any ``now``:
- the next slot is after ``now`` (and after the fire that planned it);
- a cron slot matches the expression in the entry's wall-clock time, or is the first instant after
  a DST gap that swallowed a match; and no earlier first occurrence of a match was passed over;
- an entry with ``only_between``/``not_on`` never fires outside its allowed time, and a due
  ``every`` entry inside it always fires;
- jitter delays a run by ``[0, jitter)``; catch-up counts exactly the slots ``<= now - tick``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.commands.breakers import BreakerState
from ductile.commands.schedule_plan import Spec, local, missed_slots, next_slot, parse_entry
from ductile.commands.schedules import EntryContext, ScheduleState, evaluate

S = 1_000_000_000
MIN = 60 * S
H = 3600 * S
DAY = 24 * H
ZONES = [
    "UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Santiago", "America/St_Johns",
    "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham",
    "Pacific/Auckland", "Africa/Casablanca", "America/Havana",
]
LO = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp()) * S
HI = int(datetime(2037, 12, 31, tzinfo=UTC).timestamp()) * S

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])



def _transitions(zone: str, years: range = range(2024, 2031)) -> list[int]:
    """UTC offset changes of ``zone`` (to the minute), found by scanning days then bisecting."""
    tz = ZoneInfo(zone)
    out = []
    t = int(datetime(years.start, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(years.stop, 1, 1, tzinfo=UTC).timestamp())
    offset = datetime.fromtimestamp(t, tz).utcoffset()
    while t < end:
        nxt = t + 86400
        if datetime.fromtimestamp(nxt, tz).utcoffset() != offset:
            lo, hi = t, nxt
            while hi - lo > 60:
                mid = (lo + hi) // 2 // 60 * 60
                if mid <= lo:
                    break
                if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            out.append(hi * S)
            offset = datetime.fromtimestamp(nxt, tz).utcoffset()
        t = nxt
    return out


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}
zones = st.sampled_from(ZONES)
instants = st.integers(LO, HI)


@st.composite
def zoned_nows(draw: Any) -> tuple[str, int]:
    """A zone and an instant: anywhere, on a minute boundary, or within a day of one of its DST changes."""
    zone = draw(zones)
    how = draw(st.sampled_from(["any", "minute", "dst", "dst"] if TRANSITIONS[zone] else ["any", "minute"]))
    if how == "dst":
        now = draw(st.sampled_from(TRANSITIONS[zone])) + draw(st.integers(-DAY, DAY))
    else:
        now = draw(instants)
    if how == "minute" or draw(st.booleans()):
        now -= now % MIN  # exactly on a minute, where "after now" and "at now" differ
    return zone, now


@st.composite
def cron_exprs(draw: Any) -> str:
    def field(lo: int, hi: int, names: list[str] | None = None) -> str:
        kind = draw(st.sampled_from(["star", "value", "range", "step", "list", "name"] if names else
                                    ["star", "value", "range", "step", "list"]))
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(lo, hi))
        if kind == "star":
            return "*"
        if kind == "value":
            return str(a)
        if kind == "range":
            return f"{min(a, b)}-{max(a, b)}"
        if kind == "step":
            return f"*/{draw(st.integers(1, max(1, hi - lo)))}"
        if kind == "list":
            return ",".join(str(v) for v in sorted({a, b}))
        assert names is not None
        return draw(st.sampled_from(names))

    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly"]))
    minute = field(0, 59)
    hour = field(0, 23)
    # Day of month kept <= 28 and usually "*" so that every expression has frequent matches.
    dom = draw(st.sampled_from(["*", "*", "*", "1", "15", "1-7", "28"]))
    month = draw(st.sampled_from(["*", "*", "*", "JAN", "1-6", "*/3", "MAR,OCT,NOV"]))
    dow = field(0, 7, ["MON", "SUN", "SAT", "MON-FRI"])
    return f"{minute} {hour} {dom} {month} {dow}"


@st.composite
def every_values(draw: Any) -> str:
    return draw(st.one_of(
        st.sampled_from(["hourly", "daily", "weekly", "monthly", "90s", "1h30m", "1.5d", "2w", "1.5h"]),
        st.integers(1, 10_000).map(lambda n: f"{n}s"),
        st.integers(1, 500).map(lambda n: f"{n}ms"),
        st.integers(1, 72).map(lambda n: f"{n}h{n % 60}m"),
    ))


def parse(raw: dict[str, Any]) -> Spec:
    spec, _ = parse_entry("p", 0, {"id": "e", **raw}, {"poll"}, "UTC")
    assert spec.valid, (raw, spec.invalid_detail)
    return spec


def wall_of(ns: int, zone: ZoneInfo) -> datetime:
    """The local wall-clock time, computed independently of ``schedule_plan.local``."""
    return datetime.fromtimestamp(ns // S, tz=zone)


def context(now: int, draw: float = 0.0) -> EntryContext:
    return EntryContext(now=now, jitter_draw=draw, outstanding=[], breaker=BreakerState(), reset_after=30 * 60 * S,
                        probe_outstanding=False, service_name="ductile", max_attempts=4, new_job_ids=["j"])


def gap_swallowed_a_match(expr: str, zone: ZoneInfo, instant: int) -> bool:
    """``instant`` is the first instant after a forward DST jump and a skipped wall time matches."""
    before = wall_of(instant - MIN, zone)
    after = wall_of(instant, zone)
    jump = after.replace(tzinfo=None) - before.replace(tzinfo=None)
    if jump <= timedelta(minutes=1):
        return False
    t = before.replace(tzinfo=None) + timedelta(minutes=1)
    while t < after.replace(tzinfo=None):
        if croniter.match(expr, t):
            return True
        t += timedelta(minutes=1)
    return False


@PROPS
@given(every=every_values(), zoned=zoned_nows())
def test_every_next_slot_is_after_now_by_exactly_the_interval(every: str, zoned: tuple[str, int]) -> None:
    zone, now = zoned
    spec = parse({"every": every, "timezone": zone})
    nxt = next_slot(spec, now)
    assert nxt is not None and nxt > now
    assert nxt - now == spec.every


@PROPS
@given(expr=cron_exprs(), zoned=zoned_nows())
def test_cron_next_slot_is_after_now_and_matches_in_wall_time(expr: str, zoned: tuple[str, int]) -> None:
    zone, now = zoned
    spec = parse({"cron": expr, "timezone": zone})
    tz = ZoneInfo(zone)
    nxt = next_slot(spec, now)
    assert nxt is not None and nxt > now
    assert nxt % MIN == 0
    naive = wall_of(nxt, tz).replace(tzinfo=None)
    assert croniter.match(spec.cron, naive) or gap_swallowed_a_match(spec.cron, tz, nxt), (
        expr, zone, naive.isoformat())
    assert local(nxt, tz).replace(tzinfo=None) == naive


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minute=st.sampled_from(["*/7", "0", "30", "*/15", "5,35", "59"]),
       hour=st.sampled_from(["*", "*/2", "0-3", "2", "1,2,3", "22-23", "0", "23"]), zoned=zoned_nows())
def test_cron_next_slot_is_the_first_match_after_now(minute: str, hour: str, zoned: tuple[str, int]) -> None:
    """No earlier (first-occurrence) wall-clock match, nor a gap that swallowed one, lies between."""
    zone, now = zoned
    expr = f"{minute} {hour} * * *"
    tz = ZoneInfo(zone)
    nxt = next_slot(parse({"cron": expr, "timezone": zone}), now)
    assert nxt is not None and nxt - now <= 2 * DAY
    m = now - now % MIN + MIN
    while m < nxt:
        w = wall_of(m, tz)
        repeat = w.fold == 1 and w.utcoffset() != w.replace(fold=0).utcoffset()
        assert repeat or not croniter.match(expr, w.replace(tzinfo=None)), (expr, zone, w.isoformat())
        assert not gap_swallowed_a_match(expr, tz, m), (expr, zone, w.isoformat())
        m += MIN


@st.composite
def windows(draw: Any) -> str:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(0, 24 * 60 - 1).filter(lambda e: e != start))
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def allowed(now: int, zone: str, window: str | None, not_on: list[int]) -> bool:
    w = wall_of(now, ZoneInfo(zone))
    if w.isoweekday() % 7 in {d % 7 for d in not_on}:
        return False
    if window is None:
        return True
    start = int(window[0:2]) * 60 + int(window[3:5])
    end = int(window[6:8]) * 60 + int(window[9:11])
    minute = w.hour * 60 + w.minute
    return start <= minute < end if start < end else minute >= start or minute < end


@PROPS
@given(kind=st.sampled_from(["every", "cron"]), every=every_values(), expr=cron_exprs(), zoned=zoned_nows(),
       window=st.one_of(st.none(), windows()), not_on=st.lists(st.integers(0, 7), max_size=4),
       lag=st.integers(0, 3 * DAY), draw=st.floats(0, 1, exclude_max=True))
def test_constrained_entries_fire_only_inside_their_allowed_time(
    kind: str, every: str, expr: str, zoned: tuple[str, int], window: str | None, not_on: list[int], lag: int,
    draw: float,
) -> None:
    zone, now = zoned
    raw: dict[str, Any] = {"every": every} if kind == "every" else {"cron": expr}
    raw |= {"timezone": zone, "not_on": not_on, "jitter": "30s"}
    if window is not None:
        raw["only_between"] = window
    spec = parse(raw)
    state = ScheduleState(status="active", plan_key=spec.plan_key, next_slot_at=now - lag, next_run_at=now - lag)
    intent = evaluate(spec, state, context(now, draw))
    ok = allowed(now, zone, window, not_on)
    if intent.fires:
        assert ok, (raw, wall_of(now, ZoneInfo(zone)).isoformat())
        assert intent.next_slot_at is not None and intent.next_run_at is not None
        assert intent.next_slot_at > now
        assert 0 <= intent.next_run_at - intent.next_slot_at < 30 * S
    else:
        assert not ok  # nothing else gates this entry
        [skip] = intent.events
        assert skip.reason in ("outside_time_window", "outside_day_constraint")
        if kind == "cron":
            assert skip.next_slot_at is not None and skip.next_slot_at > now
        else:
            assert skip.next_slot_at is None  # stays due


@PROPS
@given(every=every_values(), stored=instants, gap=st.integers(0, 400 * H), tick=st.integers(S // 10, 120 * S))
def test_every_catch_up_counts_exactly_the_slots_at_least_one_tick_old(every: str, stored: int, gap: int,
                                                                      tick: int) -> None:
    spec = parse({"every": every})
    now = stored + gap
    slots, count, phase_next = missed_slots(spec, stored, now, tick)
    expected = 0 if stored > now - tick else (now - tick - stored) // spec.every + 1
    assert count == expected
    assert len(slots) == min(count, 100)
    assert all(s <= now - tick and (s - stored) % spec.every == 0 for s in slots)
    assert slots == sorted(set(slots))
    if count:
        assert slots[-1] + spec.every > now - tick
        assert phase_next > now and phase_next - spec.every <= now and (phase_next - stored) % spec.every == 0
