"""Webhook deliveries (webhooks.md §3–§4): from a verified body to one queued ``handle`` job.

``envelope`` is the pure rule of §4 (which event the job receives); ``accept`` is the unit of work
the writer runs: the replay guard's lookup, the enqueue and the guard's record in one savepoint,
so a 202 means the job and its replay record are both committed, and a replayed delivery never
creates a second job, also across a restart.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ductile.app import jobs as app_jobs
from ductile.commands.jobs import EnqueueJob
from ductile.events.log import ANY, WriteTx
from ductile.events.types import WebhookAccepted, webhook_stream
from ductile.projections import webhooks as replays

DEFAULT_EVENT_TYPE = "webhook.received"
COMMAND = "handle"  # webhooks.md §1: always handle, not configurable


def submitted_by(path: str) -> str:
    """The job's ``submitted_by`` and the event's ``source`` (§4)."""
    return f"webhook:{path}"


class ReplayGuard(msgspec.Struct, frozen=True):
    """What the replay guard needs of a timestamped delivery: never the signature itself."""

    endpoint: str  # the endpoint's path
    signature_key: str  # webhook_signatures.replay_key of the header
    expires_at: int  # ns: the signed timestamp plus the tolerance


class WebhookOutcome(msgspec.Struct, frozen=True):
    job_id: str
    replayed: bool = False  # the job is the first delivery's; no new job was made
    deduped: bool = False  # the envelope's dedupe_key matched an outstanding job (jobs.md §4.1)


def envelope(body: dict[str, Any], path: str, event_type: str | None, event_id: str, timestamp: str) -> dict[str, Any]:
    """The job's payload (§4): the endpoint's ``event_type``, else a Ductile envelope as posted,
    else ``webhook.received``; then ``event_id``, ``timestamp`` and ``source``."""
    event: dict[str, Any]
    if event_type is not None:
        event = {"type": event_type, "payload": body}
    elif isinstance(body.get("type"), str) and isinstance(body.get("payload"), dict):
        event = {"type": body["type"], "payload": body["payload"]}
        if isinstance(body.get("dedupe_key"), str):
            event["dedupe_key"] = body["dedupe_key"]
    else:
        event = {"type": DEFAULT_EVENT_TYPE, "payload": body}
    event.update(source=submitted_by(path), timestamp=timestamp, event_id=event_id)
    return event


def accept(tx: WriteTx, cmd: EnqueueJob, guard: ReplayGuard | None) -> WebhookOutcome:
    if guard is not None:
        first = replays.find_accepted(tx.cur, guard.endpoint, guard.signature_key)
        if first is not None:
            return WebhookOutcome(job_id=first.job_id, replayed=True)
    outcome = app_jobs.enqueue(tx, cmd)
    job_id = outcome.job_id or outcome.existing_job_id or ""
    if guard is not None:
        tx.append(webhook_stream(guard.endpoint), [WebhookAccepted(
            endpoint=guard.endpoint, signature_key=guard.signature_key, job_id=job_id, expires_at=guard.expires_at,
            at=tx.now,
        )], ANY)
    return WebhookOutcome(job_id=job_id, deduped=outcome.deduped)
