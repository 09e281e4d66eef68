"""``ductile relay send``: deliver one event to a peer gateway (pipelines.md §10, a later phase).

The command and its flags exist so that scripts written for the full release parse; until relay
ships every use fails with the same message the ``relay:`` step gives.
"""

from __future__ import annotations

from typing import Annotated

from cyclopts import App, Parameter

from ductile.cli.output import fail
from ductile.pipelines.graph import RELAY_NOT_AVAILABLE

app = App(name="relay", help="Send an event to a peer gateway (later phase).")

@app.command
def send(
    instance: str,
    *,
    event: Annotated[str | None, Parameter(help="Event type to send.")] = None,
    payload: Annotated[str | None, Parameter(help="Event payload (a JSON object).")] = None,
    payload_file: Annotated[str | None, Parameter(help="Read the payload from a file, or - for stdin.")] = None,
    baggage: Annotated[str | None, Parameter(help="Baggage claims (a JSON object).")] = None,
    baggage_file: Annotated[str | None, Parameter(help="Read the baggage from a file, or - for stdin.")] = None,
    dedupe_key: str | None = None,
    origin_plugin: str | None = None,
    origin_job_id: str | None = None,
    origin_event_id: str | None = None,
    wait: bool = False,
    timeout: str | None = None,
    config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None,
    json: bool = False,
) -> int:
    """Send one event to relay INSTANCE. Not available in this release: exits 1.

    **Examples:**

        ductile relay send peer --event greeter.greeted --payload '{"name": "Ada"}'
    """
    raise fail(RELAY_NOT_AVAILABLE, json=json)
