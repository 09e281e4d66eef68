"""The projections the gateway runs, in application order."""

from __future__ import annotations

from ductile.projections import (
    audit,
    breakers,
    contexts,
    ledger,
    plugin_state,
    queue,
    schedules,
    vault,
    webhooks,
)
from ductile.projections.runner import ProjectionRunner

ALL = (queue.PROJECTION, ledger.PROJECTION, plugin_state.PROJECTION, schedules.PROJECTION, breakers.PROJECTION,
       contexts.PROJECTION, vault.PROJECTION, audit.PROJECTION, webhooks.PROJECTION)


def default_runner() -> ProjectionRunner:
    return ProjectionRunner(ALL)
