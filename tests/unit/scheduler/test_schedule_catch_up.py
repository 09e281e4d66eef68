"""Startup catch-up (scheduler.md §7): missed slots, the skip/run_once/run_all policies, the cap of
100 runs, catch-up dedupe keys, and what blocks catch-up."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ductile.commands.schedule_plan import missed_slots, rfc3339_seconds
from ductile.commands.schedules import Intent, catch_up, evaluate

from .samples import DAY, MIN, PLUGIN, T0, H, S, active, ctx, entry, opened, skips, utc

TICK = 60 * S
SLOT = T0 + 123_456_789  # a stored slot with sub-second digits, as first sightings produce
FIVE_MISSED = SLOT + 4 * H + 30 * MIN  # SLOT .. SLOT+4h are <= now - tick; SLOT+5h is ahead
KEY = re.compile(rf"^{PLUGIN}:poll:e:catchup:\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def hourly(**raw: Any) -> Any:
    return entry(every="1h", **raw)


def test_five_missed_slots_are_counted_and_the_phase_is_kept() -> None:
    slots, count, phase_next = missed_slots(hourly(), SLOT, FIVE_MISSED, TICK)
    assert count == 5
    assert slots == [SLOT + k * H for k in range(5)]
    assert phase_next == SLOT + 5 * H


def test_skip_enqueues_nothing_and_keeps_the_phase() -> None:
    spec = hourly()
    intent = catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED), TICK)
    assert intent.fires == []
    [skip] = skips(intent)
    assert (skip.reason, skip.catch_up, skip.missed, skip.slot) == ("catch_up_skip", True, 5, SLOT)
    assert skip.next_slot_at == SLOT + 5 * H
    assert skip.next_slot_at > FIVE_MISSED
    assert (skip.next_slot_at - SLOT) % H == 0


def test_run_once_enqueues_one_job_for_the_latest_missed_slot() -> None:
    spec = hourly(catch_up="run_once")
    intent = catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED), TICK)
    [fire] = intent.fires
    assert (fire.slot, fire.catch_up) == (SLOT + 4 * H, True)
    assert fire.job.dedupe_key == f"{PLUGIN}:poll:e:catchup:{rfc3339_seconds(SLOT + 4 * H)}"
    assert fire.job.dedupe_ttl == H
    assert (fire.job.schedule_id, fire.job.submitted_by) == ("e", "ductile")
    assert intent.next_slot_at == FIVE_MISSED + H
    assert intent.events == []


def test_run_all_enqueues_every_missed_slot_oldest_first_with_distinct_keys() -> None:
    spec = hourly(catch_up="run_all", payload={"p": 1})
    intent = catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED), TICK)
    assert [f.slot for f in intent.fires] == [SLOT + k * H for k in range(5)]
    keys = [f.job.dedupe_key for f in intent.fires]
    assert len(set(keys)) == 5
    assert all(KEY.match(k) for k in keys), keys
    assert keys[0] == f"{PLUGIN}:poll:e:catchup:2027-01-15T08:00:00Z"
    assert len({f.job.job_id for f in intent.fires}) == 5
    assert all(f.job.payload == {"p": 1} and f.catch_up for f in intent.fires)
    assert intent.next_slot_at == FIVE_MISSED + H
    assert intent.warnings == []


def test_run_all_is_capped_at_the_most_recent_100_slots_with_a_warning() -> None:
    spec = hourly(catch_up="run_all")
    now = SLOT + 249 * H + 30 * MIN
    intent = catch_up(spec, active(spec, SLOT), ctx(now), TICK)
    assert len(intent.fires) == 100
    assert [f.slot for f in intent.fires] == [SLOT + k * H for k in range(150, 250)]
    assert intent.warnings == ["catch_up capped at 100 runs; 150 older slots dropped"]


def test_a_slot_within_the_last_tick_is_not_missed_and_fires_normally() -> None:
    spec = hourly()
    state = active(spec, SLOT)
    now = SLOT + TICK - 1
    assert catch_up(spec, state, ctx(now), TICK) == Intent()
    assert [f.slot for f in evaluate(spec, state, ctx(now)).fires] == [SLOT]


def test_a_slot_exactly_one_tick_old_is_missed() -> None:
    _, count, _ = missed_slots(hourly(), SLOT, SLOT + TICK, TICK)
    assert count == 1


def test_cron_catch_up_walks_the_missed_matches_and_uses_the_service_dedupe_ttl() -> None:
    spec = entry(cron="0 */6 * * *", catch_up="run_all")
    stored = utc(2027, 1, 14, 6)
    now = utc(2027, 1, 15, 13, 0)
    intent = catch_up(spec, active(spec, stored), ctx(now, dedupe_ttl=DAY), TICK)
    assert [f.slot for f in intent.fires] == [utc(2027, 1, 14, h) for h in (6, 12, 18)] + [
        utc(2027, 1, 15, h) for h in (0, 6, 12)]
    assert {f.job.dedupe_ttl for f in intent.fires} == {DAY}
    assert intent.next_slot_at == utc(2027, 1, 15, 18)


def test_cron_skip_plans_the_first_match_after_now() -> None:
    spec = entry(cron="0 */6 * * *")
    [skip] = skips(catch_up(spec, active(spec, utc(2027, 1, 14, 6)), ctx(utc(2027, 1, 15, 13)), TICK))
    assert (skip.missed, skip.next_slot_at) == (6, utc(2027, 1, 15, 18))


def test_a_cooling_breaker_blocks_catch_up_and_leaves_the_plan_alone() -> None:
    spec = hourly(catch_up="run_all")
    intent = catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED, breaker=opened(FIVE_MISSED - MIN)), TICK)
    assert intent.fires == []
    [skip] = skips(intent)
    assert (skip.reason, skip.catch_up, skip.missed, skip.next_slot_at) == ("circuit_open", True, 5, None)


def test_an_open_breaker_blocks_catch_up_even_after_its_cooldown() -> None:
    spec = hourly(catch_up="run_all")
    breaker = opened(SLOT - DAY)  # opened long before; reset_after (30m) elapsed during the downtime
    intent = catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED, breaker=breaker), TICK)
    assert intent.fires == []
    assert [s.reason for s in skips(intent)] == ["circuit_open"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [({"only_between": "00:00-06:00"}, "outside_time_window"), ({"not_on": ["fri"]}, "outside_day_constraint")],
)
def test_a_time_constraint_at_startup_blocks_catch_up(raw: dict[str, Any], reason: str) -> None:
    spec = hourly(catch_up="run_all", **raw)
    [skip] = skips(catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED), TICK))  # Friday 12:30 UTC
    assert (skip.reason, skip.catch_up, skip.missed) == (reason, True, 5)


@pytest.mark.parametrize("raw", [{"at": "2020-01-01T00:00:00Z"}, {"after": "10m"}])
def test_one_shots_are_never_caught_up(raw: dict[str, Any]) -> None:
    spec = entry(catch_up="run_all", **raw)
    assert catch_up(spec, active(spec, T0 - 30 * DAY), ctx(T0), TICK) == Intent()


def test_catch_up_ignores_if_running() -> None:
    spec = hourly(catch_up="run_all", if_running="skip")
    intent = catch_up(spec, active(spec, SLOT), ctx(FIVE_MISSED, outstanding=["a", "b"]), TICK)
    assert len(intent.fires) == 5 and intent.cancel == []


def test_rfc3339_slot_keys_have_second_precision_in_utc() -> None:
    assert rfc3339_seconds(utc(2026, 1, 1, 3) + 999_999_999) == "2026-01-01T03:00:00Z"


SHORT_TICK = 5 * S


@pytest.mark.parametrize("policy", ["skip", "run_all"])
def test_a_new_cron_entry_keeps_its_first_run_when_the_tick_is_shorter_than_the_minute_so_far(policy: str) -> None:
    # First seen at boot 40 s into a minute, with a 5 s tick: the current minute's match is due
    # (scheduler.md §5), not missed while the gateway was down.
    spec = entry(cron="* * * * *", catch_up=policy)
    boot = T0 + 40 * S
    state = active(spec, T0, first_seen_at=boot)
    assert catch_up(spec, state, ctx(boot + 3_000_000), SHORT_TICK) == Intent()
    [fire] = evaluate(spec, state, ctx(boot + 3_000_000)).fires
    assert (fire.slot, fire.catch_up) == (T0, False)


def test_a_first_cron_slot_seen_before_a_long_downtime_is_still_missed() -> None:
    spec = entry(cron="* * * * *")
    state = active(spec, T0, first_seen_at=T0 + 40 * S)  # seen, then the gateway stopped before firing it
    [skip] = skips(catch_up(spec, state, ctx(T0 + 10 * MIN + 30 * S), SHORT_TICK))
    assert (skip.reason, skip.missed, skip.slot) == ("catch_up_skip", 11, T0)
