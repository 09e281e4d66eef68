"""Units of work for the scheduler and the breakers: read state in the writer's transaction,
decide, and append schedule, job and breaker events together."""

from __future__ import annotations

import sqlite3
import uuid

import msgspec

from ductile.app import jobs as app_jobs
from ductile.commands import breakers, jobs, schedules
from ductile.commands.breakers import BreakerState
from ductile.commands.jobs import DedupeView
from ductile.commands.schedule_plan import Spec
from ductile.commands.schedules import EntryContext, Intent, ScheduleState
from ductile.events.log import NO_STREAM, WriteTx
from ductile.events.record import Recorded
from ductile.events.types import (
    JobDeduped,
    ScheduleFired,
    ScheduleSkipped,
    breaker_stream,
    job_stream,
    schedule_stream,
)
from ductile.projections import queue
from ductile.projections import schedules as schedule_records
from ductile.vocabulary import OUTSTANDING, ScheduleStatus


class EntrySettings(msgspec.Struct, frozen=True):
    """Per-plugin settings an evaluation needs besides the entry itself."""

    service_name: str
    max_attempts: int
    reset_after: int  # ns
    dedupe_ttl: int  # ns


def load_state(cur: sqlite3.Cursor, plugin: str, schedule_id: str) -> ScheduleState | None:
    found = schedule_records.find_entry(cur, plugin, schedule_id)
    if found is None:
        return None
    return ScheduleState(
        status=found.status, reason=found.reason, detail=found.detail, plan_key=found.plan_key, command=found.command,
        next_slot_at=found.next_slot_ns, next_run_at=found.next_run_ns, first_seen_at=found.first_seen_ns,
        last_fired_at=found.last_fired_ns, last_skip_reason=found.last_skip_reason, last_skip_slot=found.last_skip_slot,
    )


def _context(tx: WriteTx, spec: Spec, settings: EntrySettings, draw: float, n_ids: int) -> EntryContext:
    cur = tx.cur
    outstanding = schedule_records.outstanding_job_ids(cur, spec.plugin, spec.id)
    breaker = app_jobs.load_breaker(cur, spec.plugin, spec.command) or BreakerState()
    probe_outstanding = False
    if breaker.state == breakers.HALF_OPEN and breaker.last_job_id:
        probe_outstanding = queue.status_of(cur, breaker.last_job_id) in OUTSTANDING
    return EntryContext(
        now=tx.now, jitter_draw=draw, outstanding=outstanding, breaker=breaker, reset_after=settings.reset_after,
        probe_outstanding=probe_outstanding, service_name=settings.service_name, max_attempts=settings.max_attempts,
        new_job_ids=[str(uuid.uuid4()) for _ in range(n_ids)], dedupe_ttl=settings.dedupe_ttl,
    )


def reconcile(tx: WriteTx, spec: Spec, draw: float) -> list[Recorded]:
    events = schedules.reconcile(spec, load_state(tx.cur, spec.plugin, spec.id), tx.now, draw)
    return tx.append(schedule_stream(spec.plugin, spec.id), events)


def evaluate(tx: WriteTx, spec: Spec, settings: EntrySettings, draw: float) -> tuple[Intent, list[Recorded]]:
    state = load_state(tx.cur, spec.plugin, spec.id)
    if state is None or state.status != ScheduleStatus.ACTIVE or state.next_run_at is None or state.next_run_at > tx.now:
        return Intent(), []  # the common case: not due, nothing read beyond the entry's row
    intent = schedules.evaluate(spec, state, _context(tx, spec, settings, draw, 1))
    return intent, carry_out(tx, spec, intent)


def catch_up(tx: WriteTx, spec: Spec, settings: EntrySettings, draw: float, tick: int) -> tuple[Intent, list[Recorded]]:
    state = load_state(tx.cur, spec.plugin, spec.id)
    intent = schedules.catch_up(spec, state, _context(tx, spec, settings, draw, 100), tick)
    return intent, carry_out(tx, spec, intent)


def carry_out(tx: WriteTx, spec: Spec, intent: Intent) -> list[Recorded]:
    stream = schedule_stream(spec.plugin, spec.id)
    recs = tx.append(stream, intent.events)
    for job_id in intent.cancel:
        job = app_jobs.load_job(tx.cur, job_id, tx)
        if job is not None and job.status in OUTSTANDING:
            recs += tx.append(job_stream(job_id), jobs.decide(
                jobs.KillJob(job_id=job_id, reason=schedules.CANCEL_REASON, error=schedules.CANCEL_REASON), job, tx.now
            ))
    fired = 0
    for fire in intent.fires:
        if fire.catch_up:
            enqueued = app_jobs.enqueue_recorded(tx, fire.job)
            recs += enqueued
            if isinstance(enqueued[0].event, JobDeduped):
                continue
        else:
            # Regular occurrences are exempt from enqueue dedupe; the key still serialises claims.
            recs += tx.append(job_stream(fire.job.job_id), jobs.decide_enqueue(fire.job, None, DedupeView(), tx.now), NO_STREAM)
        fired += 1
        recs += tx.append(stream, [ScheduleFired(
            plugin=spec.plugin, schedule_id=spec.id, command=spec.command, slot=fire.slot, job_id=fire.job.job_id,
            next_slot_at=intent.next_slot_at, next_run_at=intent.next_run_at, catch_up=fire.catch_up,
            exhausted=intent.exhausted, at=tx.now,
        )])
    if intent.fires and not fired and intent.next_slot_at is not None:
        # Every catch-up job was a duplicate: still move the plan on.
        recs += tx.append(stream, [ScheduleSkipped(
            plugin=spec.plugin, schedule_id=spec.id, command=spec.command, reason="catch_up_skip",
            next_slot_at=intent.next_slot_at, next_run_at=intent.next_run_at, catch_up=True, at=tx.now,
        )])
    if intent.breaker_events and fired:
        recs += tx.append(breaker_stream(spec.plugin, spec.command), intent.breaker_events)
    return recs


def reset_breaker(tx: WriteTx, plugin: str, command: str) -> list[Recorded]:
    state = app_jobs.load_breaker(tx.cur, plugin, command)
    return tx.append(breaker_stream(plugin, command), breakers.on_reset(state, plugin, command, tx.now))
