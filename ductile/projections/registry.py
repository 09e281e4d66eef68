"""The projections the gateway runs, in application order."""

from __future__ import annotations

from ductile.projections import breakers, contexts, ledger, plugin_state, queue, schedules
from ductile.projections.runner import ProjectionRunner

ALL = (queue.PROJECTION, ledger.PROJECTION, plugin_state.PROJECTION, schedules.PROJECTION, breakers.PROJECTION,
       contexts.PROJECTION)


def default_runner() -> ProjectionRunner:
    return ProjectionRunner(ALL)
