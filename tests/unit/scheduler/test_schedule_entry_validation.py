"""Parsing and validating ``schedules[]`` entries (scheduler.md §1–3): durations, aliases, kinds,
invalid entries and their reasons, warnings, duplicate ids."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ductile.commands.schedule_plan import parse_duration_ns
from ductile.commands.schedules import ScheduleState, reconcile
from ductile.events.types import SchedulePlanned, ScheduleStatusChanged
from ductile.runtime.scheduler import load_specs

from .samples import DAY, MIN, PLUGIN, T0, H, S, entry, parse, warnings_of

# --- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("90s", 90 * S),
        ("1h30m", 90 * MIN),
        ("1.5h", 90 * MIN),
        ("1.5d", 36 * H),
        ("2w", 336 * H),
        ("500ms", S // 2),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("42ns", 42),
        ("1m30s", 90 * S),
        ("2h45m30s", (2 * 3600 + 45 * 60 + 30) * S),
    ],
)
def test_duration_groups_and_whole_days_parse_to_nanoseconds(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("value", [300, "300", 1.5, "-5m", "1d12h", "5x", "", "1h 30m", True, None])
def test_bare_numbers_and_malformed_durations_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration_ns(value)


@pytest.mark.parametrize(
    ("every", "ns"),
    [
        ("90s", 90 * S),
        ("1h30m", 90 * MIN),
        ("1.5d", 36 * H),
        ("2w", 14 * DAY),
        ("hourly", H),
        ("daily", DAY),
        ("weekly", 7 * DAY),
        ("monthly", 30 * DAY),
        ("Monthly", 30 * DAY),
        ("HOURLY", H),
    ],
)
def test_every_accepts_durations_and_case_insensitive_aliases(every: str, ns: int) -> None:
    spec = entry(every=every)
    assert spec.kind == "every"
    assert spec.every == ns


@pytest.mark.parametrize("every", [300, "300", "0s", "-5m", "0", "5 minutes", "fortnightly"])
def test_bad_every_pauses_the_entry_as_invalid_schedule_config(every: Any) -> None:
    spec = parse({"id": "e", "every": every})
    assert spec.invalid_reason == "invalid_schedule_config"
    [event] = reconcile(spec, None, T0, 0.0)
    assert isinstance(event, ScheduleStatusChanged)
    assert (event.status, event.reason, event.mode) == ("paused_invalid", "invalid_schedule_config", "every")
    assert event.detail


# --- kinds and invalid entries --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"every": "5m", "cron": "* * * * *"},
        {"at": "2026-06-01T09:00:00Z", "after": "10m"},
        {"every": "5m", "cron": "* * * * *", "at": "2026-06-01T09:00:00Z", "after": "1m"},
        {},
        {"payload": {"x": 1}},
    ],
    ids=["every+cron", "at+after", "all four", "none", "none with payload"],
)
def test_not_exactly_one_kind_is_paused_invalid_with_unknown_mode(raw: dict[str, Any]) -> None:
    spec = parse({"id": "e", **raw})
    assert spec.invalid_reason == "invalid_schedule_config"
    assert spec.kind == "unknown"
    [event] = reconcile(spec, None, T0, 0.0)
    assert isinstance(event, ScheduleStatusChanged)
    assert (event.status, event.mode) == ("paused_invalid", "unknown")


def test_handle_can_never_be_scheduled() -> None:
    spec = parse({"id": "e", "every": "5m", "command": "handle"}, commands=frozenset({"poll", "handle"}))
    assert (spec.invalid_reason, spec.invalid_detail) == ("scheduled_handle_disallowed", "handle cannot be scheduled")
    [event] = reconcile(spec, None, T0, 0.0)
    assert (event.status, event.reason) == ("paused_invalid", "scheduled_handle_disallowed")


def test_a_command_the_manifest_does_not_declare_is_command_not_supported() -> None:
    spec = parse({"id": "e", "every": "5m", "command": "sync"})
    assert spec.invalid_reason == "command_not_supported"
    assert "sync" in (spec.invalid_detail or "")


def test_a_declared_other_command_is_accepted() -> None:
    spec = entry(cron="0 3 * * *", command="token_refresh", payload={"full": True})
    assert (spec.command, spec.payload, spec.dedupe_key) == ("token_refresh", {"full": True},
                                                            "inbox:token_refresh:e")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"id": "a:b", "every": "5m"}, id="id with colon"),
        pytest.param({"id": "", "every": "5m"}, id="empty id"),
        pytest.param({"id": "two words", "every": "5m"}, id="id with space"),
        pytest.param({"id": "tab\there", "every": "5m"}, id="id with tab"),
        pytest.param({"every": "5m", "only_between": "10:00-10:00"}, id="empty window"),
        pytest.param({"every": "5m", "only_between": "25:00-06:00"}, id="hour 25"),
        pytest.param({"every": "5m", "only_between": "08:00"}, id="window without end"),
        pytest.param({"every": "5m", "only_between": "8-20"}, id="window without minutes"),
        pytest.param({"every": "5m", "not_on": ["funday"]}, id="unknown weekday name"),
        pytest.param({"every": "5m", "not_on": [8]}, id="weekday 8"),
        pytest.param({"every": "5m", "not_on": [-1]}, id="weekday -1"),
        pytest.param({"every": "5m", "timezone": "Mars/Olympus_Mons"}, id="unknown timezone"),
        pytest.param({"every": "5m", "catch_up": "sometimes"}, id="bad catch_up"),
        pytest.param({"every": "5m", "if_running": "kill"}, id="bad if_running"),
        pytest.param({"every": "5m", "payload": [1, 2]}, id="list payload"),
        pytest.param({"every": "5m", "payload": "text"}, id="string payload"),
        pytest.param({"every": "5m", "jitter": "-1s"}, id="negative jitter"),
        pytest.param({"every": "5m", "jitter": "10"}, id="jitter without unit"),
        pytest.param({"every": "5m", "max_outstanding_polls": 0}, id="max_outstanding_polls 0"),
        pytest.param({"cron": "0 30 2 * * *"}, id="6-field cron"),
        pytest.param({"cron": "*/5 * * *"}, id="4-field cron"),
        pytest.param({"cron": "61 * * * *"}, id="minute 61"),
        pytest.param({"cron": "@reboot"}, id="unsupported descriptor"),
        pytest.param({"cron": ""}, id="empty cron"),
        pytest.param({"at": "next tuesday"}, id="unparsable at"),
        pytest.param({"at": 1780000000}, id="numeric at"),
        pytest.param({"after": "0s"}, id="zero after"),
        pytest.param({"after": "600"}, id="after without unit"),
        pytest.param({"after": "-10m"}, id="negative after"),
    ],
)
def test_invalid_values_pause_the_entry_with_invalid_schedule_config(raw: dict[str, Any]) -> None:
    spec = parse({"id": "e", **raw} if "id" not in raw else raw)
    assert spec.invalid_reason == "invalid_schedule_config", spec
    assert spec.invalid_detail
    [event] = reconcile(spec, None, T0, 0.0)
    assert isinstance(event, ScheduleStatusChanged)
    assert (event.status, event.reason, event.detail) == ("paused_invalid", "invalid_schedule_config",
                                                           spec.invalid_detail)


def test_an_entry_that_is_not_a_mapping_is_invalid() -> None:
    spec = parse("every 5m")
    assert spec.invalid_reason == "invalid_schedule_config"


def test_a_non_string_timezone_is_invalid() -> None:
    spec = parse({"id": "e", "every": "5m", "timezone": 5})
    assert spec.invalid_reason == "invalid_schedule_config"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"every": "5m"}, {"id": "e", "command": "poll", "catch_up": "skip", "if_running": "skip",
                           "max_outstanding": 1, "jitter": 0, "payload": {}, "window": None,
                           "not_on": frozenset()}),
        ({"every": "5m", "jitter": "30s", "catch_up": "run_all", "if_running": "queue",
          "max_outstanding_polls": 2, "only_between": "08:00-20:00", "not_on": ["sat", "Sunday"]},
         {"jitter": 30 * S, "catch_up": "run_all", "if_running": "queue", "max_outstanding": 2,
          "window": (8 * 60, 20 * 60), "not_on": frozenset({6, 0})}),
        ({"every": "5m", "not_on": ["tues", "THURS", "wednesday", 7, 0, "1"]}, {"not_on": frozenset({2, 4, 3, 0, 1})}),
        ({"every": "5m", "payload": None}, {"payload": {}}),
        ({"every": "5m", "jitter": 0}, {"jitter": 0}),
    ],
)
def test_optional_keys_have_the_documented_defaults_and_forms(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = entry(**raw)
    for key, value in expected.items():
        assert getattr(spec, key) == value, key


def test_id_defaults_to_default_and_timezone_to_the_host_default() -> None:
    spec = parse({"every": "5m"}, default_tz="Australia/Sydney")
    assert (spec.id, spec.timezone) == ("default", "Australia/Sydney")


def test_entry_max_outstanding_polls_defaults_to_the_plugin_value() -> None:
    assert parse({"every": "5m"}, plugin_max_outstanding=3).max_outstanding == 3


@pytest.mark.parametrize(
    "cron",
    ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@DAILY",
     "0 9 * JAN MON", "*/15 8-18 * * 1-5", "0 0 1,15 * *", "0 0 * * 7", "0 0 * * 0"],
)
def test_cron_accepts_five_fields_names_and_descriptors(cron: str) -> None:
    assert entry(cron=cron).kind == "cron"


# --- warnings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"every": "5m", "colour": "blue"}, "colour is not a known key"),
        ({"every": "5m", "preferred_window": "night"}, "preferred_window is not enforced"),
        ({"every": "10s", "jitter": "10s"}, "jitter"),
        ({"every": "5m", "if_running": "queue"}, "queue"),
        ({"at": "2026-06-01T09:00:00Z", "catch_up": "run_all"}, "catch_up is ignored"),
    ],
)
def test_questionable_but_valid_entries_warn(raw: dict[str, Any], fragment: str) -> None:
    assert parse({"id": "e", **raw}).valid
    assert any(fragment in w for w in warnings_of({"id": "e", **raw}))


# --- duplicates ----------------------------------------------------------------------------------


def test_a_duplicate_id_keeps_the_first_entry_and_reports_the_later_one() -> None:
    manifest = SimpleNamespace(commands=[SimpleNamespace(name="poll")])
    plugin_entry = SimpleNamespace(max_outstanding_polls=1, schedules=[
        {"id": "fast", "every": "5m"}, {"id": "fast", "every": "1h"}, {"id": "slow", "every": "2h"},
    ])
    catalog = SimpleNamespace(plugins={PLUGIN: SimpleNamespace(manifest=manifest, entry=plugin_entry)})
    specs, warnings = load_specs(None, catalog, default_tz="UTC")  # type: ignore[arg-type]
    assert [(s.id, s.every) for s in specs] == [("fast", 5 * MIN), ("slow", 2 * H)]
    assert f'plugin "{PLUGIN}": schedules[1].id "fast" duplicates an earlier entry' in warnings


def test_an_invalid_entry_becomes_active_once_fixed() -> None:
    broken = parse({"id": "e", "every": "300"})
    [paused] = reconcile(broken, None, T0, 0.0)
    stored = ScheduleState(status="paused_invalid", reason=paused.reason, detail=paused.detail)
    assert reconcile(broken, stored, T0 + S, 0.0) == []  # unchanged: announced once
    [planned] = reconcile(entry(every="300s"), stored, T0 + 2 * S, 0.0)
    assert isinstance(planned, SchedulePlanned)
    assert planned.next_slot_at == T0 + 2 * S
