"""Turn what a plugin process did into an attempt outcome (plugins.md §6, jobs.md §6–7)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from ductile.app.jobs import StateChange
from ductile.commands import jobs
from ductile.commands.jobs import AttemptResult
from ductile.config.durations import format_duration
from ductile.plugins.manifest import Manifest
from ductile.plugins.protocol import (
    EmittedEvent,
    PluginResponse,
    ProtocolError,
    ResponseRejected,
    decode_response,
    validate_ok,
)
from ductile.plugins.state import fact_rule_for, next_state
from ductile.runtime.process import ProcessResult
from ductile.vocabulary import PermanentReason

SPAWN_FAILED = "plugin spawn failed: "


class Classified(msgspec.Struct, frozen=True):
    result: AttemptResult
    response: PluginResponse | None = None
    events: list[EmittedEvent] = []
    state_change: Callable[[dict[str, Any]], StateChange | None] | None = None
    switch_matched: bool | None = None  # core.switch jobs: the condition's value


def classify(
    proc: ProcessResult, *, plugin: str, command: str, manifest: Manifest, timeout: float, now_rfc3339: str
) -> Classified:
    base: dict[str, Any] = {"exit_code": proc.exit_code, "duration_ms": proc.duration_ms, "stderr": proc.stderr}
    if proc.spawn_error is not None:
        return Classified(AttemptResult(outcome=jobs.SPAWN_ERROR, error=SPAWN_FAILED + proc.spawn_error, **base))
    if proc.timed_out:
        return Classified(
            AttemptResult(outcome=jobs.TIMEOUT, error=f"plugin execution timed out after {format_duration(timeout)}", **base)
        )
    if proc.stdout_overflow:
        return Classified(AttemptResult(outcome=jobs.SPAWN_ERROR, error=SPAWN_FAILED + "stdout exceeded 10 MiB limit", **base))
    raw = proc.stdout.decode("utf-8", "replace")
    try:
        response = decode_response(proc.stdout)
    except ProtocolError as exc:
        return Classified(AttemptResult(outcome=jobs.SPAWN_ERROR, error=str(exc), result=raw or None, **base))
    # The plugin's own timing breakdown, for /stopwatch, whatever the attempt's outcome.
    base["subs"] = list(response.subs[: manifest.stopwatch_max_subs])
    if response.status != "ok":
        return Classified(
            AttemptResult(outcome=jobs.ERROR, error=response.error, plugin_retry=response.retry, result=raw, **base),
            response=response,
        )
    try:
        updates, events = validate_ok(response, source=plugin, now_rfc3339=now_rfc3339, new_id=lambda: str(uuid.uuid4()))
    except ResponseRejected as exc:
        result = AttemptResult(outcome=jobs.OK, error=exc.message, permanent_reason=exc.reason, result=raw, **base)
        change = _state_change(plugin, command, manifest, exc.state_updates) if exc.reason == PermanentReason.ROUTE_ERROR else None
        return Classified(result, response=response, state_change=change)
    return Classified(
        AttemptResult(outcome=jobs.OK, result=raw, **base),
        response=response,
        events=events,
        state_change=_state_change(plugin, command, manifest, updates),
    )


def _state_change(
    plugin: str, command: str, manifest: Manifest, updates: dict[str, Any]
) -> Callable[[dict[str, Any]], StateChange | None] | None:
    if not updates:
        return None
    rule = fact_rule_for(manifest, command)

    def change(current: dict[str, Any]) -> StateChange | None:
        state = next_state(current, updates, rule)
        if rule is None:
            return StateChange(plugin=plugin, state=state, command=command)
        return StateChange(plugin=plugin, state=state, fact_type=rule.fact_type, fact=updates, command=command)

    return change
