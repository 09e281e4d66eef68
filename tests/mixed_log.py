"""Mixed event logs for the rebuild tests: jobs driven by the real state machine (retries,
failures, kills, pipelines' children, schedules), schedule entries re-planned (their last success
cleared or kept) and paused or resumed, plugin state and facts, breaker counts, vault changes and
retention prunes, as (stream, events) units to append."""

from __future__ import annotations

import uuid
from typing import Any

from ductile.commands.jobs import (
    OK,
    AttemptResult,
    ClaimJob,
    CompleteAttempt,
    EnqueueJob,
    JobState,
    KillJob,
    decide,
    evolve,
)
from ductile.events.types import (
    BreakerFailureCounted,
    ContextCreated,
    EventBase,
    PluginFactAppended,
    PluginStateChanged,
    ProjectionsPruned,
    ScheduleFired,
    SchedulePlanned,
    ScheduleStatusChanged,
    SecretSet,
    VaultInitialized,
    breaker_stream,
    context_stream,
    job_stream,
    plugin_stream,
    schedule_stream,
)
from ductile.vocabulary import SecretPattern, VaultActor

NS = 1_000_000_000


class Script:
    """Turns drawn steps into (stream, events) units, the clock moving a second per event."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * NS
        self.jobs: list[str] = []
        self.seq = 0
        self.vault_started = False

    def tick(self) -> int:
        self.now += NS
        return self.now

    def job(self, spec: dict[str, Any]) -> list[tuple[str, list[EventBase]]]:
        job_id = str(uuid.uuid4())
        events: list[EventBase] = []
        state: JobState | None = None
        extra: dict[str, Any] = {}
        if spec["child"] and self.jobs:
            extra = {"parent_job_id": self.jobs[-1], "pipeline": "p", "step_id": "s", "event_context_id": "ctx"}
        if spec["scheduled"]:
            extra["schedule_id"] = "tick"

        def run(cmd: Any) -> None:
            nonlocal state
            for event in decide(cmd, state, self.tick()):
                state = evolve(state, event)
                events.append(event)

        run(EnqueueJob(job_id=job_id, plugin=spec["plugin"], command="poll", payload={"n": len(self.jobs)},
                       submitted_by="api", max_attempts=3, config_snapshot_id="cfg-enqueue", **extra))
        for outcome in spec["outcomes"]:
            if state is None or state.status != "queued":
                break
            # Each attempt under its own config snapshot (job_log names the latest attempt's), some
            # claimed by a named node (several nodes on one store), some by the single gateway.
            run(ClaimJob(job_id=job_id, config_snapshot_id=f"cfg-{len(events)}",
                         node=f"node-{len(events) % 3}" if len(events) % 2 else None))
            run(CompleteAttempt(job_id=job_id, attempt=state.attempt, backoff_base=NS,
                                result=AttemptResult(outcome=outcome, error="" if outcome == OK else "boom",
                                                     result="{}" if outcome == OK else None)))
        if spec["kill"] and state is not None and state.status in ("queued", "running"):
            run(KillJob(job_id=job_id, reason="cancelled", error="by the operator"))
        self.jobs.append(job_id)
        units = [(job_stream(job_id), events)]
        if spec["scheduled"]:
            units.append((schedule_stream(spec["plugin"], "tick"), [ScheduleFired(
                plugin=spec["plugin"], schedule_id="tick", command="poll", slot=self.now, job_id=job_id,
                at=self.tick())]))
        if spec["child"] and extra:
            units.append((context_stream(str(uuid.uuid4())), [ContextCreated(
                context_id=str(uuid.uuid4()), parent_id=None, pipeline="p", step_id="s", claims={}, context={},
                at=self.tick())]))
        return units

    def units(self, kind: str, arg: Any) -> list[tuple[str, list[EventBase]]]:
        if kind == "job":
            return self.job(arg)
        if kind == "state":
            return [(plugin_stream(arg), [PluginStateChanged(plugin=arg, state={"at": self.now}, at=self.tick())])]
        if kind == "fact":
            self.seq += 1
            return [(plugin_stream(arg), [PluginFactAppended(plugin=arg, seq=self.seq, fact_type="seen",
                                                             fact={"n": self.seq}, job_id="j", command="poll",
                                                             at=self.tick())])]
        if kind == "plan":  # the scheduled jobs' entry re-planned, its last success cleared or kept
            plugin, clear_success = arg
            return [(schedule_stream(plugin, "tick"), [SchedulePlanned(
                plugin=plugin, schedule_id="tick", plan_key="k2", command="poll", mode="interval", timezone="UTC",
                next_slot_at=self.now, next_run_at=self.now, first_seen_at=self.now, reason="config",
                clear_success=clear_success, at=self.tick())])]
        if kind == "status":  # an entry paused or resumed; "tock" has no row until its first one
            plugin, schedule_id, status = arg
            return [(schedule_stream(plugin, schedule_id), [ScheduleStatusChanged(
                plugin=plugin, schedule_id=schedule_id, from_status=None, status=status, reason="operator",
                at=self.tick())])]
        if kind == "breaker":
            return [(breaker_stream(arg, "poll"), [BreakerFailureCounted(plugin=arg, command="poll",
                                                                         failure_count=1, at=self.tick())])]
        if kind == "vault":
            events: list[EventBase] = []
            if not self.vault_started:
                self.vault_started = True
                events.append(VaultInitialized(actor=VaultActor.CLI, blob_sha256="a" * 64, at=self.tick()))
            events.append(SecretSet(actor=VaultActor.CLI, name=f"s{arg}", created=True,
                                    pattern=SecretPattern.MANUAL, blob_sha256="b" * 64, at=self.tick()))
            return [("vault", events)]
        cut = int(self.now - (self.now - 1_700_000_000 * NS) * (1 - arg))
        return [("retention", [ProjectionsPruned(before={t: cut for t in (
            "job_queue", "job_log", "job_transitions", "job_attempts", "circuit_breaker_transitions")},
            at=self.tick())])]
