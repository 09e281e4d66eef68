"""Slots and time constraints in the entry's wall-clock zone (scheduler.md §2, §5): first slots,
next slots, cron across DST changes, ``at`` without offset, ``only_between`` and ``not_on``."""

from __future__ import annotations

import os
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ductile.commands.schedule_plan import (
    Spec,
    first_slot,
    host_timezone,
    in_window,
    instant_for_wall,
    local,
    next_cron,
    next_slot,
)
from ductile.commands.schedules import evaluate

from .samples import DAY, MIN, T0, S, active, after_intent, ctx, entry, parse, utc, wall

BERLIN = ZoneInfo("Europe/Berlin")


def fires_between(spec: Spec, start: int, end: int, step: int = MIN + S) -> list[tuple[int, int]]:
    """Run the decider on a fake clock from ``start`` to ``end``: ``[(slot, fired_at), ...]``."""
    state = active(spec, first_slot(spec, start, start))
    out = []
    now = start
    while now <= end:
        intent = evaluate(spec, state, ctx(now))
        out += [(f.slot, now) for f in intent.fires]
        state = after_intent(state, intent, now)
        now += step
    return out


# --- only_between / not_on -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hh", "mm", "allowed"),
    [(23, 0, True), (22, 0, True), (0, 0, True), (5, 59, True), (6, 0, False), (21, 59, False), (12, 0, False)],
)
def test_a_window_spanning_midnight_is_half_open(hh: int, mm: int, allowed: bool) -> None:
    spec = entry(every="5m", only_between="22:00-06:00")
    ok, reason = in_window(spec, utc(2027, 1, 13, hh, mm))
    assert ok is allowed
    assert reason == (None if allowed else "outside_time_window")


@pytest.mark.parametrize(("hh", "mm", "allowed"), [(8, 0, True), (19, 59, True), (20, 0, False), (7, 59, False)])
def test_a_daytime_window_includes_its_start_and_excludes_its_end(hh: int, mm: int, allowed: bool) -> None:
    assert in_window(entry(every="5m", only_between="08:00-20:00"), utc(2027, 1, 13, hh, mm))[0] is allowed


@pytest.mark.parametrize("not_on", [[7], ["sun"], [0], ["Sunday"], ["SUN"], "sun"])
def test_not_on_sunday_in_any_spelling_blocks_sundays_only(not_on: object) -> None:
    spec = entry(every="5m", not_on=not_on)
    sunday, saturday, monday = utc(2027, 1, 17, 12), utc(2027, 1, 16, 23, 59), utc(2027, 1, 18, 0, 0)
    assert in_window(spec, sunday) == (False, "outside_day_constraint")
    assert in_window(spec, saturday) == (True, None)
    assert in_window(spec, monday) == (True, None)


def test_constraints_use_the_entry_zone_not_utc() -> None:
    # Saturday 14:00 UTC is Sunday 01:00 in Sydney (AEDT, UTC+11).
    spec = entry(every="5m", not_on=["sun"], timezone="Australia/Sydney")
    assert in_window(spec, utc(2027, 1, 16, 14, 0)) == (False, "outside_day_constraint")
    spec = entry(every="5m", only_between="08:00-20:00", timezone="Australia/Sydney")
    assert in_window(spec, utc(2027, 1, 16, 21, 0)) == (True, None)  # 08:00 Sunday in Sydney
    assert in_window(spec, utc(2027, 1, 16, 20, 59))[0] is False  # 07:59 in Sydney


def test_the_day_constraint_is_checked_before_the_time_window() -> None:
    spec = entry(every="5m", not_on=["sun"], only_between="08:00-09:00")
    assert in_window(spec, utc(2027, 1, 17, 12)) == (False, "outside_day_constraint")


# --- first and next slots --------------------------------------------------------------------------


def test_every_first_slot_is_now_and_next_slot_counts_from_the_fire_time() -> None:
    spec = entry(every="90s")
    assert first_slot(spec, T0 + 123, T0) == T0 + 123
    assert next_slot(spec, T0 + 7 * S) == T0 + 7 * S + 90 * S


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2027, 1, 15, 12, 5, 30), utc(2027, 1, 15, 12, 5)),  # a match in the current minute is due now
        (utc(2027, 1, 15, 12, 5, 0), utc(2027, 1, 15, 12, 5)),
        (utc(2027, 1, 15, 12, 6, 0), utc(2027, 1, 15, 12, 10)),
        (utc(2027, 1, 15, 12, 9, 59), utc(2027, 1, 15, 12, 10)),
    ],
)
def test_cron_first_slot_is_the_first_match_from_the_start_of_the_current_minute(now: int, expected: int) -> None:
    assert first_slot(entry(cron="*/5 * * * *"), now, now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2027, 1, 15, 12, 5, 0), utc(2027, 1, 15, 12, 10)),  # strictly after now
        (utc(2027, 1, 15, 12, 5, 0) + 1, utc(2027, 1, 15, 12, 10)),
        (utc(2027, 1, 15, 12, 4, 59), utc(2027, 1, 15, 12, 5)),
    ],
)
def test_cron_next_slot_is_the_first_match_after_now(now: int, expected: int) -> None:
    assert next_slot(entry(cron="*/5 * * * *"), now) == expected


def test_one_shots_start_at_their_instant_and_have_no_next_slot() -> None:
    at = entry(at="2020-01-01T00:00:00Z")
    assert first_slot(at, T0, T0) == utc(2020, 1, 1)  # a past at is due at once
    assert next_slot(at, T0) is None
    after = entry(after="10m")
    assert first_slot(after, T0 + 5 * S, T0) == T0 + 10 * MIN  # from first sighting, not from now
    assert next_slot(after, T0) is None


def test_cron_is_read_in_the_entry_zone() -> None:
    spec = entry(cron="0 9 * * *", timezone="Australia/Sydney")
    assert next_slot(spec, utc(2027, 1, 15, 0, 0)) == utc(2027, 1, 15, 22, 0)  # 09:00 AEDT = 22:00Z the day before


@pytest.mark.parametrize(
    ("cron", "now", "expected"),
    [
        ("0 0 * * 7", utc(2027, 1, 15), utc(2027, 1, 17)),  # 7 = Sunday
        ("0 0 * * SUN", utc(2027, 1, 15), utc(2027, 1, 17)),
        ("0 0 13 * FRI", utc(2027, 1, 15, 1), utc(2027, 1, 22)),  # both day fields restricted: either fires
        ("@monthly", utc(2027, 1, 15), utc(2027, 2, 1)),
        ("@hourly", utc(2027, 1, 15, 10, 0), utc(2027, 1, 15, 11, 0)),
    ],
)
def test_cron_day_fields_and_descriptors(cron: str, now: int, expected: int) -> None:
    assert next_slot(entry(cron=cron), now) == expected


# --- at ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "zone"),
    [
        ("2026-06-01T09:00:00", "Australia/Sydney"),
        ("2026-06-01T09:00:00+10:00", "UTC"),
        ("2026-05-31T23:00:00Z", "America/New_York"),
        (datetime(2026, 6, 1, 9, 0), "Australia/Sydney"),  # unquoted YAML timestamp
    ],
)
def test_at_without_offset_is_read_in_the_entry_zone(at: object, zone: str) -> None:
    assert entry(at=at, timezone=zone).at == utc(2026, 5, 31, 23, 0)


def test_at_without_offset_in_a_dst_gap_is_the_first_instant_after_it() -> None:
    assert entry(at="2026-03-29T02:30:00", timezone="Europe/Berlin").at == utc(2026, 3, 29, 1, 0)


def test_at_without_offset_in_a_repeated_hour_is_its_first_occurrence() -> None:
    assert entry(at="2026-10-25T02:30:00", timezone="Europe/Berlin").at == utc(2026, 10, 25, 0, 30)


# --- DST -----------------------------------------------------------------------------------------


def test_instant_for_wall_maps_gaps_forward_and_repeats_to_the_first_occurrence() -> None:
    assert instant_for_wall(datetime(2026, 3, 29, 2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert instant_for_wall(datetime(2026, 10, 25, 2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    assert instant_for_wall(datetime(2026, 7, 1, 12, 0), BERLIN) == utc(2026, 7, 1, 10, 0)


def test_next_cron_across_the_berlin_changes() -> None:
    assert next_cron("30 2 * * *", BERLIN, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 0)
    assert next_cron("30 2 * * *", BERLIN, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 30, 0, 30)
    assert next_cron("30 2 * * *", BERLIN, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)
    assert next_cron("30 2 * * *", BERLIN, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)  # not 01:30Z today


@pytest.mark.parametrize(
    ("zone", "cron", "day", "fired_utc", "fired_wall"),
    [
        ("Europe/Berlin", "30 2 * * *", (2026, 3, 29), utc(2026, 3, 29, 1, 0), (3, 0)),
        ("America/New_York", "30 2 * * *", (2026, 3, 8), utc(2026, 3, 8, 7, 0), (3, 0)),
    ],
)
def test_cron_time_skipped_by_spring_forward_fires_once_right_after_the_jump(
    zone: str, cron: str, day: tuple[int, int, int], fired_utc: int, fired_wall: tuple[int, int]
) -> None:
    spec = entry(cron=cron, timezone=zone)
    start = wall(zone, *day, 0, 0) - DAY
    fires = fires_between(spec, start, start + 3 * DAY)
    on_day = [slot for slot, _ in fires if local(slot, ZoneInfo(zone)).date() == datetime(*day).date()]
    assert on_day == [fired_utc]
    t = local(fired_utc, ZoneInfo(zone))
    assert (t.hour, t.minute) == fired_wall
    assert len(fires) == 3  # one per local day, nothing lost or doubled around the change


@pytest.mark.parametrize(
    ("zone", "cron", "day", "first_utc"),
    [
        ("Europe/Berlin", "30 2 * * *", (2026, 10, 25), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", "30 1 * * *", (2026, 11, 1), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_cron_time_repeated_by_fall_back_fires_once_at_its_first_occurrence(
    zone: str, cron: str, day: tuple[int, int, int], first_utc: int
) -> None:
    spec = entry(cron=cron, timezone=zone)
    start = wall(zone, *day, 0, 0) - DAY
    fires = fires_between(spec, start, start + 3 * DAY)
    on_day = [slot for slot, _ in fires if local(slot, ZoneInfo(zone)).date() == datetime(*day).date()]
    assert on_day == [first_utc]
    assert len(fires) == 3


def test_every_intervals_are_absolute_across_dst() -> None:
    spec = entry(every="1h", timezone="Europe/Berlin")
    fired_at = utc(2026, 3, 29, 0, 30)  # 01:30 CET, the jump happens at 01:00Z
    assert next_slot(spec, fired_at) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST: one real hour later


def test_hourly_cron_on_spring_forward_does_not_fire_twice_for_the_same_instant() -> None:
    spec = entry(cron="0 * * * *", timezone="Europe/Berlin")
    fires = fires_between(spec, utc(2026, 3, 28, 22), utc(2026, 3, 29, 4))
    slots = [slot for slot, _ in fires]
    assert len(slots) == len(set(slots))
    # 00:00 and 01:00 CET, then 02:00 (missing) and 03:00 CEST both map to 01:00Z: one fire.
    assert utc(2026, 3, 29, 1, 0) in slots


def test_a_timezone_changes_the_parse_of_a_naive_at_but_not_a_zoned_one() -> None:
    assert parse({"at": "2026-06-01T09:00:00Z", "timezone": "Asia/Tokyo"}).at == utc(2026, 6, 1, 9)
    assert parse({"at": "2026-06-01T09:00:00", "timezone": "Asia/Tokyo"}).at == utc(2026, 6, 1, 0)


# --- host zone -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "localtime", "expected"),
    [
        ({"TZ": "Asia/Tokyo"}, "/usr/share/zoneinfo/America/New_York", ("Asia/Tokyo", True)),
        ({"TZ": ":Europe/Berlin"}, "/usr/share/zoneinfo/America/New_York", ("Europe/Berlin", True)),
        ({}, "/usr/share/zoneinfo/America/New_York", ("America/New_York", True)),
        ({"TZ": "Not/AZone"}, "/usr/share/zoneinfo/Australia/Sydney", ("Australia/Sydney", True)),
        ({"TZ": "Not/AZone"}, "/etc/localtime", ("UTC", False)),
        ({}, "/var/db/timezone/localtime", ("UTC", False)),
    ],
)
def test_the_host_zone_comes_from_tz_then_etc_localtime_else_utc(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], localtime: str, expected: tuple[str, bool]
) -> None:
    monkeypatch.setattr(os.path, "realpath", lambda _p: localtime)
    assert host_timezone(environ) == expected
