"""The one duration grammar (config.md §3.4, scheduler.md §2) and its edge cases, decided once.

Config, schedules and the CLI all read durations through ``ductile.formats.durations``; the
tests below pin the cases where the two specs are silent or the old parsers disagreed.
"""

from __future__ import annotations

import pytest

from ductile.cli.common import parse_timeout
from ductile.cli.output import CliFailure
from ductile.commands.schedule_plan import Spec, parse_entry
from ductile.config import ConfigError, parse_duration
from ductile.formats.durations import DurationError, format_duration, parse_duration_ns

S = 1_000_000_000
H = 3600 * S


def _entry(**keys: object) -> Spec:
    spec, _warnings = parse_entry("p", 0, {"id": "e", **keys}, {"poll"}, "UTC")
    return spec


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        (".5s", S // 2),  # Go's number forms: a leading dot
        ("1.s", S),  # ... and a trailing one
        ("+5m", 5 * 60 * S),  # Go's leading plus
        ("0", 0),  # zero needs no unit: its unit cannot matter
        (0, 0),
        ("0.0", 0),
        ("0s", 0),
        (" 90s ", 90 * S),  # surrounding space is not part of the value
        ("1h30m", 90 * 60 * S),
        ("1.5d", 36 * H),  # d and w take decimals, as a whole value
        ("2w", 336 * H),
        ("250µs", 250_000),
        ("0.1ns", 0),  # below a nanosecond truncates, as in Go
    ],
)
def test_edge_cases_parse_to_exact_nanoseconds(text: str | int, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1d12h", 'invalid duration "1d12h"'),  # d and w only whole (scheduler.md §2): write 36h
        ("12h1d", 'invalid duration "12h1d"'),
        ("30", 'invalid duration "30": missing unit'),
        (30, 'invalid duration "30": missing unit'),
        (1.5, 'invalid duration "1.5": missing unit'),
        ("-5m", 'invalid duration "-5m": must not be negative'),
        (-5, 'invalid duration "-5": must not be negative'),
        ("-soon", 'invalid duration "-soon"'),
        ("", 'invalid duration ""'),
        (".s", 'invalid duration ".s"'),
        ("5", 'invalid duration "5": missing unit'),
        ("1h 30m", 'invalid duration "1h 30m"'),
        ("5M", 'invalid duration "5M"'),  # units are case-sensitive, as in Go
        ("++5m", 'invalid duration "++5m"'),
        ("١s", 'invalid duration "١s"'),  # an Arabic-Indic digit: digits are ASCII only
        (True, 'invalid duration "True"'),
        (None, 'invalid duration "None"'),
    ],
)
def test_refusals_say_why(value: object, message: str) -> None:
    with pytest.raises(DurationError) as error:
        parse_duration_ns(value)
    assert str(error.value) == message


@pytest.mark.parametrize("text", [".5s", "+5m", "1.5d", "2w", "1h30m", "300ms"])
def test_config_schedules_and_cli_agree(text: str) -> None:
    seconds = parse_duration_ns(text) / S
    assert parse_duration(text, "k") == seconds
    assert parse_timeout(text) == (seconds, text)
    assert _entry(every=text).every == parse_duration_ns(text)


def _reason(text: str) -> str | None:
    return {"-5m": "must not be negative", "30": "missing unit"}.get(text)


@pytest.mark.parametrize("text", ["1d12h", "5x", "-5m", "30"])
def test_config_schedules_and_cli_refuse_alike(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text, "k")
    spec = _entry(every=text)
    assert spec.invalid_reason == "invalid_schedule_config"
    assert spec.invalid_detail == f"every: {DurationError(text.strip(), _reason(text))}"
    if text != "30":  # a bare number on the command line means seconds (cli.md)
        with pytest.raises(CliFailure) as error:
            parse_timeout(text)
        assert error.value.code == 2


def test_a_zero_jitter_is_no_jitter_in_any_spelling() -> None:
    for jitter in (0, "0", "0s", "0.0"):
        spec = _entry(every="5m", jitter=jitter)
        assert spec.valid
        assert spec.jitter == 0


@pytest.mark.parametrize("ns", [1, 999, S // 2, S, 90 * S, 36 * H, 336 * H, 90 * 60 * S + 1])
def test_the_formatted_form_parses_back_exactly(ns: int) -> None:
    assert parse_duration_ns(format_duration(ns / S)) == ns
