"""operations.md §9: when /healthz calls the scheduler late."""

from ductile.runtime.services import is_late


def test_a_fast_tick_is_late_only_after_the_thirty_second_floor() -> None:
    assert not is_late(29.0, tick_interval=1.0)
    assert is_late(31.0, tick_interval=1.0)


def test_a_slow_tick_is_late_after_three_intervals() -> None:
    assert not is_late(170.0, tick_interval=60.0)
    assert is_late(181.0, tick_interval=60.0)
