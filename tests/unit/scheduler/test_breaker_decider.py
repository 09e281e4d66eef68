"""The circuit breaker decider (jobs.md §9): terminal outcomes of scheduled jobs, the probe, the
operator reset, and the state folded from its events."""

from __future__ import annotations

from functools import reduce

import pytest

from ductile.commands import breakers
from ductile.commands.breakers import BreakerState, evolve, on_probe, on_reset, on_terminal
from ductile.commands.errors import InvalidTransition
from ductile.events.types import BreakerFailureCounted, BreakerTransitioned

from .samples import MIN, T0

P, C = "inbox", "poll"
THRESHOLD = 3


def terminal(state: BreakerState, status: str, now: int = T0, cancelled: bool = False, job: str = "j",
             threshold: int = THRESHOLD) -> list:
    return on_terminal(state, P, C, job, status, cancelled, threshold, now)


def fold(events: list) -> BreakerState:
    return reduce(evolve, events, BreakerState())


@pytest.mark.parametrize("status", ["failed", "timed_out", "dead"])
def test_three_failures_open_the_breaker_with_the_default_threshold(status: str) -> None:
    state = BreakerState()
    history = []
    for i in range(3):
        events = terminal(state, status, now=T0 + i, job=f"j{i}")
        history += events
        state = evolve(state, events[0])
    first, second, third = history
    assert isinstance(first, BreakerFailureCounted) and first.failure_count == 1
    assert isinstance(second, BreakerFailureCounted) and second.failure_count == 2
    assert isinstance(third, BreakerTransitioned)
    assert (third.from_state, third.to_state, third.failure_count, third.reason, third.job_id, third.opened_at) == (
        "closed", "open", 3, "failure_threshold", "j2", T0 + 2)
    assert (state.state, state.opened_at, state.last_failure_at, state.last_job_id) == ("open", T0 + 2, T0 + 2, "j2")


def test_the_configured_threshold_is_honoured() -> None:
    state = BreakerState(failure_count=3)
    [event] = terminal(state, "failed", threshold=5)
    assert isinstance(event, BreakerFailureCounted) and event.failure_count == 4
    [event] = terminal(BreakerState(failure_count=4), "failed", threshold=5)
    assert isinstance(event, BreakerTransitioned) and event.to_state == "open"


@pytest.mark.parametrize("from_state", ["open", "half_open"])
def test_a_success_closes_the_breaker_and_resets_the_count(from_state: str) -> None:
    state = BreakerState(state=from_state, failure_count=3, opened_at=T0 - MIN)
    [event] = terminal(state, "succeeded", job="probe")
    assert isinstance(event, BreakerTransitioned)
    assert (event.from_state, event.to_state, event.failure_count, event.reason, event.job_id) == (
        from_state, "closed", 0, "success", "probe")
    after = evolve(state, event)
    assert (after.state, after.failure_count, after.opened_at) == ("closed", 0, None)


def test_a_success_while_closed_with_failures_resets_the_count_without_a_transition() -> None:
    [event] = terminal(BreakerState(failure_count=2, last_failure_at=T0 - MIN), "succeeded")
    assert isinstance(event, BreakerFailureCounted)
    assert event.failure_count == 0
    assert evolve(BreakerState(failure_count=2), event).failure_count == 0


def test_a_success_while_closed_and_clean_records_nothing() -> None:
    assert terminal(BreakerState(), "succeeded") == []


def test_a_failed_probe_reopens_with_a_new_opened_at() -> None:
    state = BreakerState(state="half_open", failure_count=3, opened_at=T0 - 30 * MIN)
    [event] = terminal(state, "failed", now=T0, job="probe")
    assert isinstance(event, BreakerTransitioned)
    assert (event.from_state, event.to_state, event.reason, event.opened_at, event.failure_count) == (
        "half_open", "open", "failure_threshold", T0, 4)
    assert evolve(state, event).opened_at == T0


@pytest.mark.parametrize("state", [BreakerState(), BreakerState(failure_count=2),
                                   BreakerState(state="half_open", failure_count=3, opened_at=T0)])
def test_a_cancellation_never_counts(state: BreakerState) -> None:
    assert terminal(state, "dead", cancelled=True) == []


@pytest.mark.parametrize("status", ["queued", "running", "skipped"])
def test_non_failure_statuses_do_not_count(status: str) -> None:
    assert terminal(BreakerState(failure_count=2), status) == []


def test_a_failure_while_open_counts_but_keeps_the_cooldown() -> None:
    state = BreakerState(state="open", failure_count=3, opened_at=T0 - MIN)
    [event] = terminal(state, "failed")
    assert isinstance(event, BreakerFailureCounted) and event.failure_count == 4
    after = evolve(state, event)
    assert (after.state, after.opened_at) == ("open", T0 - MIN)


def test_the_probe_moves_open_to_half_open_keeping_opened_at() -> None:
    state = BreakerState(state="open", failure_count=3, opened_at=T0 - 30 * MIN, last_failure_at=T0 - 30 * MIN)
    [event] = on_probe(state, P, C, "probe", T0)
    assert (event.from_state, event.to_state, event.reason, event.job_id, event.opened_at) == (
        "open", "half_open", "cooldown_elapsed", "probe", T0 - 30 * MIN)
    after = evolve(state, event)
    assert (after.state, after.last_job_id) == ("half_open", "probe")


@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_only_an_open_breaker_can_be_probed(state: str) -> None:
    with pytest.raises(InvalidTransition):
        on_probe(BreakerState(state=state), P, C, "probe", T0)


@pytest.mark.parametrize("state", [None, BreakerState()])
def test_resetting_a_closed_or_never_used_breaker_is_a_no_op(state: BreakerState | None) -> None:
    assert on_reset(state, P, C, T0) == []


@pytest.mark.parametrize("from_state", ["open", "half_open"])
def test_a_manual_reset_closes_the_breaker(from_state: str) -> None:
    state = BreakerState(state=from_state, failure_count=4, opened_at=T0 - MIN)
    [event] = on_reset(state, P, C, T0)
    assert (event.from_state, event.to_state, event.failure_count, event.reason) == (
        from_state, "closed", 0, "manual_reset")
    assert (evolve(state, event).state, evolve(state, event).failure_count) == ("closed", 0)


def test_cooling_lasts_exactly_reset_after_from_opened_at() -> None:
    state = BreakerState(state="open", opened_at=T0)
    assert state.cooling(T0 + 30 * MIN - 1, 30 * MIN)
    assert not state.cooling(T0 + 30 * MIN, 30 * MIN)
    assert not BreakerState(state="half_open", opened_at=T0).cooling(T0, 30 * MIN)
    assert not BreakerState().cooling(T0, 30 * MIN)


def test_a_full_cycle_folds_to_the_expected_state() -> None:
    events: list = []
    state = BreakerState()
    for i in range(3):
        new = terminal(state, "failed", now=T0 + i, job=f"f{i}")
        events += new
        state = fold(events)
    new = on_probe(state, P, C, "probe1", T0 + 31 * MIN)
    events += new
    state = fold(events)
    events += terminal(state, "failed", now=T0 + 32 * MIN, job="probe1")
    state = fold(events)
    assert (state.state, state.opened_at) == (breakers.OPEN, T0 + 32 * MIN)
    events += on_probe(state, P, C, "probe2", T0 + 63 * MIN)
    state = fold(events)
    events += terminal(state, "succeeded", now=T0 + 64 * MIN, job="probe2")
    state = fold(events)
    assert (state.state, state.failure_count, state.opened_at, state.last_job_id) == ("closed", 0, None, "probe2")
    reasons = [e.reason for e in events if isinstance(e, BreakerTransitioned)]
    assert reasons == ["failure_threshold", "cooldown_elapsed", "failure_threshold", "cooldown_elapsed", "success"]
