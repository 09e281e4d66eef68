"""Shared values for the scheduler decider tests: entries, stored state, evaluation contexts.

Every instant is an explicit Unix-ns integer; nothing here reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from ductile.commands.breakers import BreakerState
from ductile.commands.schedule_plan import Spec, parse_entry
from ductile.commands.schedules import EntryContext, Intent, ScheduleState
from ductile.events.types import ScheduleSkipped

S = 1_000_000_000
MIN = 60 * S
H = 3600 * S
DAY = 24 * H
PLUGIN = "inbox"
COMMANDS = frozenset({"poll", "token_refresh"})
# 2027-01-15T08:00:00Z, a Friday: far from any DST change in the zones used below.
T0 = int(datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()) * S


def utc(*args: int) -> int:
    """Unix ns of a UTC calendar time: ``utc(2026, 3, 29, 1, 0)``."""
    return int(datetime(*args, tzinfo=UTC).timestamp()) * S  # type: ignore[misc]


def wall(zone: str, *args: int, fold: int = 0) -> int:
    """Unix ns of an existing wall-clock time in ``zone``."""
    return int(datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).timestamp()) * S  # type: ignore[misc]


def parse(raw: Any, commands: frozenset[str] = COMMANDS, default_tz: str = "UTC",
          plugin_max_outstanding: int = 1) -> Spec:
    return parse_entry(PLUGIN, 0, raw, set(commands), default_tz, plugin_max_outstanding)[0]


def warnings_of(raw: Any) -> list[str]:
    return parse_entry(PLUGIN, 0, raw, set(COMMANDS), "UTC")[1]


def entry(**raw: Any) -> Spec:
    """A valid entry with id ``e``; fails loudly if the test wrote an invalid one."""
    spec = parse({"id": "e", **raw})
    assert spec.valid, (raw, spec.invalid_reason, spec.invalid_detail)
    return spec


def active(spec: Spec, slot: int, run: int | None = None, **kw: Any) -> ScheduleState:
    """Stored state of an active entry whose next slot is ``slot``."""
    return ScheduleState(status="active", plan_key=spec.plan_key, command=spec.command, next_slot_at=slot,
                         next_run_at=slot if run is None else run, first_seen_at=kw.pop("first_seen_at", slot), **kw)


def ctx(now: int, **kw: Any) -> EntryContext:
    values: dict[str, Any] = {
        "now": now, "jitter_draw": 0.0, "outstanding": [], "breaker": BreakerState(), "reset_after": 30 * MIN,
        "probe_outstanding": False, "service_name": "ductile", "max_attempts": 4,
        "new_job_ids": [f"job-{i}" for i in range(100)], "dedupe_ttl": DAY,
    }
    values.update(kw)
    return EntryContext(**values)


def opened(at: int, failures: int = 3) -> BreakerState:
    return BreakerState(state="open", failure_count=failures, opened_at=at, last_failure_at=at, last_job_id="failed-job")


def skips(intent: Intent) -> list[ScheduleSkipped]:
    return [e for e in intent.events if isinstance(e, ScheduleSkipped)]


def after_intent(state: ScheduleState, intent: Intent, now: int) -> ScheduleState:
    """The stored state once ``intent`` is carried out (mirrors ductile/projections/schedules.py)."""
    for e in intent.events:
        if isinstance(e, ScheduleSkipped):
            changes: dict[str, Any] = {"last_skip_reason": e.reason, "last_skip_slot": e.slot}
            if e.next_slot_at is not None:
                changes.update(next_slot_at=e.next_slot_at, next_run_at=e.next_run_at)
            state = msgspec.structs.replace(state, **changes)
    if intent.fires:
        if intent.exhausted:
            return msgspec.structs.replace(state, status="exhausted", next_slot_at=None, next_run_at=None,
                                           last_fired_at=now, last_skip_reason=None, last_skip_slot=None)
        return msgspec.structs.replace(state, next_slot_at=intent.next_slot_at, next_run_at=intent.next_run_at,
                                       last_fired_at=now, last_skip_reason=None, last_skip_slot=None)
    return state
