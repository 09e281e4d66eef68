"""The schedule decider: plan entries, evaluate a due entry's gates, startup catch-up.

Pure. Returns an ``Intent`` that the schedule unit of work carries out in one transaction: the
schedule events, the jobs to enqueue (with the entry's next plan), the jobs to cancel and the
breaker moves, so an occurrence can neither fire twice nor lose its plan.
"""

from __future__ import annotations

import msgspec

from ductile.commands import breakers
from ductile.commands.breakers import BreakerState
from ductile.commands.jobs import EnqueueJob
from ductile.commands.schedule_plan import (
    CATCH_UP_CAP,
    Spec,
    first_slot,
    in_window,
    jitter_ns,
    missed_slots,
    next_slot,
    rfc3339_seconds,
)
from ductile.events.types import (
    EventBase,
    ScheduleFired,
    SchedulePlanned,
    ScheduleSkipped,
    ScheduleStatusChanged,
)
from ductile.vocabulary import ScheduleStatus

CANCEL_REASON = "cancelled by scheduler (if_running=cancel)"


class ScheduleState(msgspec.Struct, kw_only=True):
    status: ScheduleStatus
    reason: str | None = None
    detail: str | None = None
    plan_key: str | None = None
    command: str = "poll"
    next_slot_at: int | None = None
    next_run_at: int | None = None
    first_seen_at: int | None = None
    last_fired_at: int | None = None
    last_skip_reason: str | None = None
    last_skip_slot: int | None = None


class EntryContext(msgspec.Struct, kw_only=True):
    """What the unit of work read for this evaluation, plus the random draws and new ids."""

    now: int
    jitter_draw: float
    outstanding: list[str]  # job ids of the entry that are queued or running
    breaker: BreakerState
    reset_after: int  # ns
    probe_outstanding: bool
    service_name: str
    max_attempts: int
    new_job_ids: list[str]
    dedupe_ttl: int = 0  # ns, service.dedupe_ttl (cron catch-up)


class Fire(msgspec.Struct, frozen=True):
    job: EnqueueJob
    slot: int
    catch_up: bool = False


class Intent(msgspec.Struct, kw_only=True):
    events: list[EventBase] = []
    fires: list[Fire] = []
    next_slot_at: int | None = None
    next_run_at: int | None = None
    exhausted: bool = False
    cancel: list[str] = []
    breaker_events: list[EventBase] = []
    warnings: list[str] = []


def reconcile(spec: Spec, state: ScheduleState | None, now: int, jitter_draw: float) -> list[EventBase]:
    """Bring stored state in line with the configured entry (boot and reload)."""
    if not spec.valid:
        if state is None or (state.status, state.reason, state.detail) != (
            ScheduleStatus.PAUSED_INVALID, spec.invalid_reason, spec.invalid_detail
        ):
            return [ScheduleStatusChanged(
                plugin=spec.plugin, schedule_id=spec.id, from_status=state.status if state else None,
                status=ScheduleStatus.PAUSED_INVALID, reason=spec.invalid_reason, detail=spec.invalid_detail,
                command=spec.command, mode=spec.kind, timezone=spec.timezone, at=now,
            )]
        return []
    if state is not None and state.plan_key == spec.plan_key and state.status in (ScheduleStatus.ACTIVE, ScheduleStatus.EXHAUSTED):
        return []  # resume the stored plan (an exhausted one-shot stays exhausted)
    if spec.kind == "every" and state is not None and state.last_fired_at is not None and state.plan_key:
        slot = state.last_fired_at + spec.every
    else:
        slot = first_slot(spec, now, now)
    return [SchedulePlanned(
        plugin=spec.plugin, schedule_id=spec.id, plan_key=spec.plan_key, command=spec.command, mode=spec.kind,
        timezone=spec.timezone, next_slot_at=slot, next_run_at=slot + jitter_ns(spec, jitter_draw),
        first_seen_at=now, reason="replan" if state is not None else "first_sighting",
        clear_success=state is not None and state.command != spec.command, at=now,
    )]


def _job(spec: Spec, ctx: EntryContext, i: int, dedupe_key: str, ttl: int) -> EnqueueJob:
    return EnqueueJob(
        job_id=ctx.new_job_ids[i], plugin=spec.plugin, command=spec.command, payload=dict(spec.payload),
        submitted_by=ctx.service_name, max_attempts=ctx.max_attempts, dedupe_key=dedupe_key, dedupe_ttl=ttl,
        schedule_id=spec.id,
    )


def _skip(spec: Spec, state: ScheduleState, ctx: EntryContext, reason: str, drop: bool) -> Intent:
    slot = state.next_slot_at
    if drop and spec.kind in ("every", "cron"):
        nxt = next_slot(spec, ctx.now)
        assert nxt is not None
        return Intent(events=[ScheduleSkipped(
            plugin=spec.plugin, schedule_id=spec.id, command=spec.command, reason=reason, slot=slot,
            next_slot_at=nxt, next_run_at=nxt + jitter_ns(spec, ctx.jitter_draw), at=ctx.now,
        )])
    if (state.last_skip_slot, state.last_skip_reason) == (slot, reason):
        return Intent()  # announced once per occurrence and reason
    return Intent(events=[ScheduleSkipped(
        plugin=spec.plugin, schedule_id=spec.id, command=spec.command, reason=reason, slot=slot, at=ctx.now,
    )])


def evaluate(spec: Spec, state: ScheduleState | None, ctx: EntryContext) -> Intent:
    """One scheduler pass over one entry (scheduler.md §4); the first failing gate stops it."""
    now = ctx.now
    if not spec.valid or state is None or state.status != ScheduleStatus.ACTIVE or state.next_run_at is None:
        return Intent()
    if state.next_run_at > now:
        return Intent()
    ok, reason = in_window(spec, now)
    if not ok:
        assert reason is not None
        return _skip(spec, state, ctx, reason, drop=spec.kind == "cron")
    b = ctx.breaker
    probe = False
    if b.state == breakers.OPEN:
        if b.cooling(now, ctx.reset_after):
            return _skip(spec, state, ctx, "circuit_open", drop=True)
        probe = True
    elif b.state == breakers.HALF_OPEN:
        if ctx.probe_outstanding:
            return _skip(spec, state, ctx, "circuit_open", drop=True)
        probe = True
    cancel: list[str] = []
    outstanding = len(ctx.outstanding)
    if spec.if_running == "skip" and outstanding > 0:
        return _skip(spec, state, ctx, "already_running", drop=True)
    if spec.if_running == "queue" and outstanding >= spec.max_outstanding:
        return _skip(spec, state, ctx, "outstanding_limit", drop=True)
    if spec.if_running == "cancel":
        cancel = list(ctx.outstanding)
    job = _job(spec, ctx, 0, spec.dedupe_key, 0)
    intent = Intent(fires=[Fire(job=job, slot=state.next_slot_at or now)], cancel=cancel)
    nxt = next_slot(spec, now)
    if nxt is None:
        intent.exhausted = True
    else:
        intent.next_slot_at, intent.next_run_at = nxt, nxt + jitter_ns(spec, ctx.jitter_draw)
    if probe:
        decide_probe = breakers.on_probe if b.state == breakers.OPEN else breakers.on_reprobe
        intent.breaker_events = decide_probe(b, spec.plugin, spec.command, job.job_id, now)
    return intent


def catch_up(spec: Spec, state: ScheduleState | None, ctx: EntryContext, tick: int) -> Intent:
    """Startup catch-up for ``every``/``cron`` entries that missed slots while the gateway was down."""
    now = ctx.now
    if (not spec.valid or state is None or state.status != ScheduleStatus.ACTIVE or spec.kind not in ("every", "cron")
            or state.next_slot_at is None):
        return Intent()
    first_seen = state.first_seen_at
    if spec.kind == "cron" and first_seen is not None and state.next_slot_at < first_seen and first_seen > now - tick:
        # A first sighting plans a cron entry at the start of its current minute (§5), so that slot
        # lies before the sighting: it became due when seen, within the last tick, and fires
        # normally rather than counting as missed while the gateway was down. (A re-planned
        # ``every`` entry keeps its old phase, whose past slots really were missed.)
        return Intent()
    slots, count, phase_next = missed_slots(spec, state.next_slot_at, now, tick)
    if count == 0:
        return Intent()
    ok, reason = in_window(spec, now)
    if ok and ctx.breaker.state != breakers.CLOSED:
        # Never a burst of catch-up runs at a broken plugin: an open breaker (even one whose
        # cooldown has elapsed) gets its single probe from the normal evaluation instead.
        ok, reason = False, "circuit_open"
    if not ok:
        return Intent(events=[ScheduleSkipped(
            plugin=spec.plugin, schedule_id=spec.id, command=spec.command, reason=reason or "", slot=state.next_slot_at,
            catch_up=True, missed=count, at=now,
        )])
    if spec.catch_up == "skip":
        return Intent(events=[ScheduleSkipped(
            plugin=spec.plugin, schedule_id=spec.id, command=spec.command, reason="catch_up_skip",
            slot=state.next_slot_at, next_slot_at=phase_next, next_run_at=phase_next + jitter_ns(spec, ctx.jitter_draw),
            catch_up=True, missed=count, at=now,
        )])
    chosen = slots[-1:] if spec.catch_up == "run_once" else slots
    warnings = []
    if spec.catch_up == "run_all" and count > CATCH_UP_CAP:
        warnings.append(f"catch_up capped at {CATCH_UP_CAP} runs; {count - CATCH_UP_CAP} older slots dropped")
    ttl = spec.every if spec.kind == "every" else ctx.dedupe_ttl
    fires = [
        Fire(job=_job(spec, ctx, i, f"{spec.dedupe_key}:catchup:{rfc3339_seconds(slot)}", ttl), slot=slot, catch_up=True)
        for i, slot in enumerate(chosen)
    ]
    nxt = next_slot(spec, now)
    assert nxt is not None
    return Intent(fires=fires, next_slot_at=nxt, next_run_at=nxt + jitter_ns(spec, ctx.jitter_draw), warnings=warnings)


# --- evolve ------------------------------------------------------------------------------------
# The decider's own reading of an entry's stream (scheduler.md §4–§9). The ``schedule_state``
# projection must agree with it (tests/property/test_schedule_projection_agreement.py), and a
# replay through it is what the projection is checked against.

_replace = msgspec.structs.replace


def evolve(state: ScheduleState | None, event: EventBase) -> ScheduleState | None:
    """The entry's state after ``event``; events of other kinds leave it as it was."""
    match event:
        case SchedulePlanned():
            return _replace(
                state or ScheduleState(status=ScheduleStatus.ACTIVE), status=ScheduleStatus.ACTIVE, reason=None,
                detail=None, plan_key=event.plan_key, command=event.command, next_slot_at=event.next_slot_at,
                next_run_at=event.next_run_at, first_seen_at=event.first_seen_at, last_skip_reason=None,
                last_skip_slot=None,
            )
        case ScheduleStatusChanged() if state is None:
            return ScheduleState(status=event.status, reason=event.reason, detail=event.detail, command=event.command)
        case ScheduleStatusChanged():
            return _replace(
                state, status=event.status, reason=event.reason, detail=event.detail, command=event.command,
                plan_key=None if event.status == ScheduleStatus.PAUSED_INVALID else state.plan_key,
            )
        case ScheduleFired() if state is None:
            raise ValueError(f"ScheduleFired before the entry was planned: {event.plugin}/{event.schedule_id}")
        case ScheduleFired() if event.exhausted:
            return _replace(state, status=ScheduleStatus.EXHAUSTED, reason="one_shot_exhausted", next_slot_at=None,
                            next_run_at=None, last_fired_at=event.at, last_skip_reason=None, last_skip_slot=None)
        case ScheduleFired() if event.next_slot_at is not None:
            return _replace(state, next_slot_at=event.next_slot_at, next_run_at=event.next_run_at,
                            last_fired_at=event.at, last_skip_reason=None, last_skip_slot=None)
        case ScheduleFired():
            return _replace(state, last_fired_at=event.at)
        case ScheduleSkipped() if state is None:
            raise ValueError(f"ScheduleSkipped before the entry was planned: {event.plugin}/{event.schedule_id}")
        case ScheduleSkipped() if event.next_slot_at is not None:
            return _replace(state, next_slot_at=event.next_slot_at, next_run_at=event.next_run_at,
                            last_skip_reason=event.reason, last_skip_slot=event.slot)
        case ScheduleSkipped():
            return _replace(state, last_skip_reason=event.reason, last_skip_slot=event.slot)
    return state


def fold(events: list[EventBase]) -> ScheduleState | None:
    state: ScheduleState | None = None
    for e in events:
        state = evolve(state, e)
    return state
