"""The schedule decider (scheduler.md §4–6, §8–9): ``reconcile`` plans entries, ``evaluate`` runs the
gates of one due entry and returns an ``Intent``. Table-driven over (spec, stored state, context)."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from ductile.commands import breakers
from ductile.commands.breakers import BreakerState
from ductile.commands.schedules import Intent, ScheduleState, evaluate, reconcile
from ductile.events.types import BreakerTransitioned, SchedulePlanned, ScheduleSkipped

from .samples import DAY, MIN, PLUGIN, T0, H, S, active, after_intent, ctx, entry, opened, skips, utc

# --- reconcile -------------------------------------------------------------------------------------


def test_first_sighting_of_an_every_entry_plans_it_due_now() -> None:
    spec = entry(every="5m")
    [event] = reconcile(spec, None, T0, 0.0)
    assert isinstance(event, SchedulePlanned)
    assert (event.reason, event.next_slot_at, event.next_run_at, event.first_seen_at) == ("first_sighting", T0, T0, T0)
    assert (event.plugin, event.schedule_id, event.mode, event.command, event.plan_key) == (
        PLUGIN, "e", "every", "poll", spec.plan_key)
    assert not event.clear_success


@pytest.mark.parametrize(
    ("raw", "slot"),
    [
        ({"cron": "0 3 * * *"}, utc(2027, 1, 16, 3)),
        ({"at": "2026-06-01T09:00:00+10:00"}, utc(2026, 5, 31, 23)),
        ({"after": "10m"}, T0 + 10 * MIN),
    ],
)
def test_first_sighting_plans_each_kind_by_its_rule(raw: dict[str, Any], slot: int) -> None:
    [event] = reconcile(entry(**raw), None, T0, 0.0)
    assert (event.next_slot_at, event.next_run_at) == (slot, slot)


def test_first_sighting_delays_the_run_by_the_jitter_draw() -> None:
    [event] = reconcile(entry(every="5m", jitter="10s"), None, T0, 0.25)
    assert (event.next_slot_at, event.next_run_at) == (T0, T0 + int(2.5 * S))


@pytest.mark.parametrize("status", ["active", "exhausted"])
def test_an_unchanged_entry_resumes_its_stored_plan(status: str) -> None:
    spec = entry(at="2026-06-01T09:00:00Z")
    stored = ScheduleState(status=status, plan_key=spec.plan_key, command="poll", last_fired_at=T0 - H)
    assert reconcile(spec, stored, T0, 0.5) == []


@pytest.mark.parametrize(
    "change",
    [{"jitter": "30s"}, {"payload": {"x": 1}}, {"only_between": "08:00-20:00"}, {"not_on": ["sun"]},
     {"if_running": "queue"}, {"max_outstanding_polls": 3}, {"catch_up": "run_all"}],
)
def test_settings_outside_the_plan_do_not_replan(change: dict[str, Any]) -> None:
    before = entry(every="5m")
    stored = active(before, T0 + 5 * MIN, last_fired_at=T0)
    assert reconcile(entry(every="5m", **change), stored, T0 + MIN, 0.0) == []


def test_a_changed_interval_replans_from_the_last_fire() -> None:
    old, new = entry(every="1h"), entry(every="30m")
    stored = active(old, T0 + H, last_fired_at=T0)
    [event] = reconcile(new, stored, T0 + 10 * MIN, 0.0)
    assert isinstance(event, SchedulePlanned)
    assert (event.reason, event.next_slot_at, event.plan_key) == ("replan", T0 + 30 * MIN, new.plan_key)


def test_a_shortened_interval_whose_slot_is_past_is_due_at_once() -> None:
    stored = active(entry(every="1h"), T0 + H, last_fired_at=T0)
    [event] = reconcile(entry(every="5m"), stored, T0 + 20 * MIN, 0.0)
    assert event.next_slot_at == T0 + 5 * MIN
    intent = evaluate(entry(every="5m"), after_planned(stored, event), ctx(T0 + 20 * MIN))
    assert len(intent.fires) == 1


def test_a_changed_entry_that_never_fired_is_planned_as_a_first_sighting() -> None:
    stored = active(entry(every="1h"), T0 + H)
    [event] = reconcile(entry(every="30m"), stored, T0 + MIN, 0.0)
    assert event.next_slot_at == T0 + MIN


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"cron": "0 3 * * *"}, {"cron": "0 4 * * *"}),
        ({"every": "1h"}, {"every": "1h", "timezone": "Asia/Tokyo"}),
        ({"every": "1h"}, {"cron": "0 * * * *"}),
        ({"after": "10m"}, {"after": "20m"}),
    ],
)
def test_plan_fields_replan_the_entry(old: dict[str, Any], new: dict[str, Any]) -> None:
    stored = active(entry(**old), T0 + H)
    [event] = reconcile(entry(**new), stored, T0, 0.0)
    assert isinstance(event, SchedulePlanned) and event.reason == "replan"


def test_a_changed_at_on_an_exhausted_entry_fires_again() -> None:
    old, new = entry(at="2026-06-01T09:00:00Z"), entry(at="2026-06-02T09:00:00Z")
    stored = ScheduleState(status="exhausted", reason="one_shot_exhausted", plan_key=old.plan_key,
                           last_fired_at=utc(2026, 6, 1, 9))
    [event] = reconcile(new, stored, utc(2026, 6, 3), 0.0)
    assert event.next_slot_at == utc(2026, 6, 2, 9)
    state = after_planned(stored, event)
    assert state.status == "active"
    intent = evaluate(new, state, ctx(utc(2026, 6, 3)))
    assert len(intent.fires) == 1 and intent.exhausted


def test_a_command_change_replans_and_clears_the_last_success() -> None:
    stored = active(entry(every="1h"), T0 + H, last_fired_at=T0)
    [event] = reconcile(entry(every="1h", command="token_refresh"), stored, T0 + MIN, 0.0)
    assert event.clear_success
    assert event.command == "token_refresh"
    [event] = reconcile(entry(every="2h"), stored, T0 + MIN, 0.0)
    assert not event.clear_success


def after_planned(state: ScheduleState, e: SchedulePlanned) -> ScheduleState:
    return msgspec.structs.replace(state, status="active", reason=None, plan_key=e.plan_key, command=e.command,
                                   next_slot_at=e.next_slot_at, next_run_at=e.next_run_at,
                                   first_seen_at=e.first_seen_at)


# --- evaluate: due or not --------------------------------------------------------------------------


def test_an_entry_that_is_not_due_does_nothing() -> None:
    spec = entry(every="5m")
    assert evaluate(spec, active(spec, T0 + 1), ctx(T0)) == Intent()


@pytest.mark.parametrize(
    "state",
    [None, ScheduleState(status="paused_invalid", reason="invalid_schedule_config"),
     ScheduleState(status="exhausted", reason="one_shot_exhausted")],
)
def test_only_active_entries_are_evaluated(state: ScheduleState | None) -> None:
    assert evaluate(entry(every="5m"), state, ctx(T0)) == Intent()


def test_a_due_entry_enqueues_the_documented_job_and_plans_from_the_fire_time() -> None:
    spec = entry(every="5m", payload={"q": 1})
    intent = evaluate(spec, active(spec, T0 - 3 * S), ctx(T0, service_name="gw", max_attempts=2))
    [fire] = intent.fires
    job = fire.job
    assert (job.job_id, job.plugin, job.command, job.payload, job.submitted_by, job.schedule_id) == (
        "job-0", PLUGIN, "poll", {"q": 1}, "gw", "e")
    assert (job.dedupe_key, job.max_attempts) == (f"{PLUGIN}:poll:e", 2)
    assert (fire.slot, fire.catch_up) == (T0 - 3 * S, False)
    assert (intent.next_slot_at, intent.next_run_at, intent.exhausted) == (T0 + 5 * MIN, T0 + 5 * MIN, False)
    assert intent.events == [] and intent.cancel == [] and intent.breaker_events == []


def test_a_due_cron_entry_plans_the_first_match_after_now() -> None:
    spec = entry(cron="0 * * * *")
    intent = evaluate(spec, active(spec, utc(2027, 1, 15, 10)), ctx(utc(2027, 1, 15, 10, 0, 1)))
    assert len(intent.fires) == 1
    assert intent.next_slot_at == utc(2027, 1, 15, 11)


@pytest.mark.parametrize("raw", [{"at": "2026-06-01T09:00:00Z"}, {"after": "10m"}])
def test_a_one_shot_fires_once_and_is_exhausted(raw: dict[str, Any]) -> None:
    spec = entry(**raw)
    state = active(spec, T0 - H)
    intent = evaluate(spec, state, ctx(T0))
    assert len(intent.fires) == 1
    assert intent.exhausted and intent.next_slot_at is None and intent.next_run_at is None
    state = after_intent(state, intent, T0)
    assert state.status == "exhausted"
    assert evaluate(spec, state, ctx(T0 + DAY)) == Intent()


def test_a_payload_is_copied_into_the_job_not_shared() -> None:
    spec = entry(every="5m", payload={"q": [1]})
    job = evaluate(spec, active(spec, T0), ctx(T0)).fires[0].job
    assert job.payload == spec.payload and job.payload is not spec.payload


# --- evaluate: time constraints --------------------------------------------------------------------

OUTSIDE = utc(2027, 1, 15, 21, 0)  # Friday 21:00 UTC
INSIDE = utc(2027, 1, 15, 22, 0)


def test_an_every_entry_blocked_by_its_window_stays_due_and_is_announced_once() -> None:
    spec = entry(every="1h", only_between="22:00-06:00")
    slot = OUTSIDE - 10 * MIN
    state = active(spec, slot)
    intent = evaluate(spec, state, ctx(OUTSIDE))
    assert intent.fires == []
    [skip] = skips(intent)
    assert (skip.reason, skip.slot, skip.next_slot_at, skip.catch_up) == ("outside_time_window", slot, None, False)
    state = after_intent(state, intent, OUTSIDE)
    assert (state.next_slot_at, state.last_skip_reason, state.last_skip_slot) == (slot, "outside_time_window", slot)
    assert evaluate(spec, state, ctx(OUTSIDE + 30 * MIN)) == Intent()  # same occurrence, same reason: silent
    intent = evaluate(spec, state, ctx(INSIDE))  # the first pass inside the window fires it
    assert [f.slot for f in intent.fires] == [slot]
    assert intent.next_slot_at == INSIDE + H


def test_an_every_entry_blocked_by_its_day_is_announced_with_the_day_reason() -> None:
    spec = entry(every="1h", not_on=["fri"])
    [skip] = skips(evaluate(spec, active(spec, OUTSIDE), ctx(OUTSIDE)))
    assert skip.reason == "outside_day_constraint" and skip.next_slot_at is None


def test_a_cron_occurrence_outside_the_window_is_dropped() -> None:
    spec = entry(cron="0 * * * *", only_between="22:00-06:00")
    intent = evaluate(spec, active(spec, OUTSIDE), ctx(OUTSIDE + S))
    assert intent.fires == []
    [skip] = skips(intent)
    assert (skip.reason, skip.slot, skip.next_slot_at) == ("outside_time_window", OUTSIDE, INSIDE)
    assert skip.next_run_at == INSIDE


def test_a_one_shot_outside_its_window_stays_due() -> None:
    spec = entry(at="2027-01-15T20:00:00Z", only_between="22:00-06:00")
    state = active(spec, utc(2027, 1, 15, 20))
    intent = evaluate(spec, state, ctx(OUTSIDE))
    [skip] = skips(intent)
    assert skip.next_slot_at is None
    state = after_intent(state, intent, OUTSIDE)
    assert len(evaluate(spec, state, ctx(INSIDE)).fires) == 1


# --- evaluate: circuit breaker --------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "dropped_to"), [({"every": "1h"}, T0 + H), ({"cron": "0 * * * *"}, T0 + H)])
def test_an_open_breaker_while_cooling_drops_the_occurrence(raw: dict[str, Any], dropped_to: int) -> None:
    spec = entry(**raw)
    intent = evaluate(spec, active(spec, T0), ctx(T0, breaker=opened(T0 - MIN)))
    assert intent.fires == [] and intent.breaker_events == []
    [skip] = skips(intent)
    assert (skip.reason, skip.slot, skip.next_slot_at) == ("circuit_open", T0, dropped_to)


def test_an_open_breaker_keeps_a_one_shot_due() -> None:
    spec = entry(at="2027-01-15T07:00:00Z")
    [skip] = skips(evaluate(spec, active(spec, T0 - H), ctx(T0, breaker=opened(T0 - MIN))))
    assert (skip.reason, skip.next_slot_at) == ("circuit_open", None)


def test_an_elapsed_cooldown_makes_the_occurrence_the_probe() -> None:
    spec = entry(every="1h")
    breaker = opened(T0 - 30 * MIN)
    intent = evaluate(spec, active(spec, T0), ctx(T0, breaker=breaker, reset_after=30 * MIN))
    [fire] = intent.fires
    [move] = intent.breaker_events
    assert isinstance(move, BreakerTransitioned)
    assert (move.from_state, move.to_state, move.reason, move.job_id) == ("open", "half_open", "cooldown_elapsed",
                                                                         fire.job.job_id)
    assert (move.plugin, move.command, move.failure_count, move.opened_at) == (PLUGIN, "poll", 3, T0 - 30 * MIN)


def test_one_ns_before_the_cooldown_ends_the_breaker_still_skips() -> None:
    spec = entry(every="1h")
    intent = evaluate(spec, active(spec, T0), ctx(T0, breaker=opened(T0 - 30 * MIN + 1), reset_after=30 * MIN))
    assert intent.fires == [] and skips(intent)[0].reason == "circuit_open"


@pytest.mark.parametrize("if_running", ["skip", "queue", "cancel"])
def test_a_half_open_breaker_with_its_probe_outstanding_skips_whatever_if_running_says(if_running: str) -> None:
    spec = entry(every="1h", if_running=if_running, max_outstanding_polls=5)
    half = BreakerState(state="half_open", failure_count=3, opened_at=T0 - H, last_job_id="probe")
    intent = evaluate(spec, active(spec, T0), ctx(T0, breaker=half, probe_outstanding=True, outstanding=[]))
    assert intent.fires == [] and intent.cancel == []
    [skip] = skips(intent)
    assert (skip.reason, skip.next_slot_at) == ("circuit_open", T0 + H)


def test_a_half_open_breaker_without_an_outstanding_probe_lets_the_next_occurrence_through() -> None:
    spec = entry(every="1h")
    half = BreakerState(state="half_open", failure_count=3, opened_at=T0 - H, last_job_id="old-probe")
    intent = evaluate(spec, active(spec, T0), ctx(T0, breaker=half, probe_outstanding=False))
    [fire] = intent.fires
    # The breaker stays half_open: no state change, so no transition is recorded (jobs.md §9); the
    # new probe is remembered so that later occurrences wait for it.
    assert not [e for e in intent.breaker_events if isinstance(e, BreakerTransitioned)]
    after = breakers.evolve(half, intent.breaker_events[-1])
    assert (after.state, after.failure_count, after.opened_at, after.last_job_id) == (
        "half_open", 3, T0 - H, fire.job.job_id)


# --- evaluate: if_running -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_running", "max_out", "outstanding", "fires", "reason"),
    [
        ("skip", 1, [], 1, None),
        ("skip", 1, ["a"], 0, "already_running"),
        ("skip", 5, ["a"], 0, "already_running"),
        ("queue", 2, [], 1, None),
        ("queue", 2, ["a"], 1, None),
        ("queue", 2, ["a", "b"], 0, "outstanding_limit"),
        ("queue", 1, ["a"], 0, "outstanding_limit"),
        ("cancel", 1, ["a", "b"], 1, None),
    ],
)
def test_if_running_policies(if_running: str, max_out: int, outstanding: list[str], fires: int,
                             reason: str | None) -> None:
    spec = entry(every="1h", if_running=if_running, max_outstanding_polls=max_out)
    intent = evaluate(spec, active(spec, T0), ctx(T0, outstanding=outstanding))
    assert len(intent.fires) == fires
    if reason is None:
        assert skips(intent) == []
        assert intent.cancel == (outstanding if if_running == "cancel" else [])
    else:
        [skip] = skips(intent)
        assert (skip.reason, skip.next_slot_at) == (reason, T0 + H)  # every: dropped, plan the next slot


def test_queue_never_lets_more_than_max_outstanding_accumulate() -> None:
    spec = entry(every="1m", if_running="queue", max_outstanding_polls=2)
    state, outstanding, now = active(spec, T0), [], T0
    for _ in range(10):  # nothing ever finishes
        intent = evaluate(spec, state, ctx(now, outstanding=list(outstanding)))
        outstanding += [f.job.job_id + str(now) for f in intent.fires]
        assert len(outstanding) <= 2
        state = after_intent(state, intent, now)
        now += MIN
    assert len(outstanding) == 2


@pytest.mark.parametrize("raw", [{"at": "2026-06-01T09:00:00Z"}, {"after": "10m"}])
def test_a_one_shot_that_is_already_running_stays_due(raw: dict[str, Any]) -> None:
    spec = entry(**raw)
    [skip] = skips(evaluate(spec, active(spec, T0 - H), ctx(T0, outstanding=["a"])))
    assert (skip.reason, skip.next_slot_at) == ("already_running", None)


def test_a_dropped_occurrence_is_announced_on_every_drop() -> None:
    spec = entry(every="1m")
    state = active(spec, T0)
    reasons = []
    for i in range(3):
        intent = evaluate(spec, state, ctx(T0 + i * MIN, outstanding=["a"]))
        reasons += [s.reason for s in skips(intent)]
        state = after_intent(state, intent, T0 + i * MIN)
    assert reasons == ["already_running"] * 3


# --- jitter ---------------------------------------------------------------------------------------


def test_jitter_delays_each_slot_by_less_than_the_jitter() -> None:
    spec = entry(every="1m", jitter="10s")
    rng = random.Random(20260601)
    draws = [0.0, 1.0 - 2.0**-53] + [rng.random() for _ in range(198)]
    delays = []
    state, now = active(spec, T0), T0
    for draw in draws:
        intent = evaluate(spec, state, ctx(now, jitter_draw=draw))
        assert len(intent.fires) == 1
        assert intent.next_slot_at == now + MIN
        assert intent.next_run_at is not None
        delays.append(intent.next_run_at - intent.next_slot_at)
        state = after_intent(state, intent, now)
        now = intent.next_run_at
    assert len(delays) == 200
    assert all(0 <= d < 10 * S for d in delays)
    assert max(delays) > 9 * S and min(delays) == 0  # the whole range is used
    assert len(set(delays)) > 150


def test_jitter_also_applies_to_a_dropped_occurrence() -> None:
    spec = entry(every="1h", jitter="10s")
    [skip] = skips(evaluate(spec, active(spec, T0), ctx(T0, outstanding=["a"], jitter_draw=0.5)))
    assert skip.next_run_at == skip.next_slot_at + 5 * S


def test_the_run_time_with_jitter_gates_the_entry_not_the_slot() -> None:
    spec = entry(every="1h", jitter="10s")
    state = active(spec, T0, run=T0 + 7 * S)
    assert evaluate(spec, state, ctx(T0 + 6 * S)) == Intent()
    assert evaluate(spec, state, ctx(T0 + 7 * S)).fires[0].slot == T0


def test_skip_events_name_the_entry() -> None:
    spec = entry(every="1h", command="token_refresh")
    [skip] = skips(evaluate(spec, active(spec, T0), ctx(T0, outstanding=["a"])))
    assert isinstance(skip, ScheduleSkipped)
    assert (skip.plugin, skip.schedule_id, skip.command, skip.at) == (PLUGIN, "e", "token_refresh", T0)
