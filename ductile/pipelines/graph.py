"""The compiled form of a pipeline: nodes, labelled edges, entries and terminals (pipelines.md §3.1).

A ``uses`` step is a node (its plugin, command ``handle``); a step with ``if:`` gets a
``<id>__switch`` node in front of it, whose out-edges are labelled ``ductile.switch.true`` and
``ductile.switch.false``. ``steps``, ``split`` and ``call`` produce no node of their own.
An unlabelled edge accepts any event type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ductile.pipelines.baggage import BaggageSpec
from ductile.pipelines.conditions import Condition
from ductile.pipelines.templates import WithSpec

SWITCH_TRUE = "ductile.switch.true"
SWITCH_FALSE = "ductile.switch.false"
STEP_SUCCEEDED = "ductile.step.succeeded"
STEP_SKIPPED = "ductile.step.skipped"
SWITCH_PLUGIN = "core.switch"
RELAY_PLUGIN = "core.relay"
# What a relay step job and `ductile relay send` answer until relay ships (pipelines.md §10).
RELAY_NOT_AVAILABLE = "relay is not available in this release"


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # "step" | "switch" | "relay"
    plugin: str  # the plugin instance, or core.switch / core.relay
    command: str = "handle"
    with_spec: WithSpec | None = None
    baggage: BaggageSpec | None = None
    condition: Condition | None = None  # switches only
    gates: str | None = None  # switches only: the id of the step it gates


@dataclass(frozen=True)
class Edge:
    target: str
    label: str | None = None  # None accepts any event type

    def accepts(self, event_type: str) -> bool:
        return self.label is None or self.label == event_type


# pipelines.md §2: a pipeline without ``timeout`` waits this long when called synchronously.
DEFAULT_PIPELINE_TIMEOUT = 30.0  # seconds


@dataclass
class Pipeline:
    name: str
    on: str | None
    on_hook: str | None
    from_plugin: str | None
    condition: Condition | None
    max_depth: int  # the effective route_max_depth
    synchronous: bool
    timeout: float  # seconds
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[str, list[Edge]] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)
    terminals: list[str] = field(default_factory=list)
    source_file: str = ""
    condition_raw: Any = None  # the trigger ``if:`` as written, for compiled_routes

    @property
    def trigger(self) -> str:
        return self.on if self.on is not None else (self.on_hook or "")

    def successors(self, node_id: str, event_type: str) -> list[str]:
        return [e.target for e in self.edges.get(node_id, []) if e.accepts(event_type)]

    def routes(self) -> list[dict[str, Any]]:
        """``compiled_routes`` of ``GET /config/view``."""
        out: list[dict[str, Any]] = []
        source: dict[str, Any] = (
            {"trigger": self.on} if self.on is not None else {"hook_signal": self.on_hook}
        )
        if self.from_plugin:
            source["source_plugin"] = self.from_plugin
        if self.condition_raw is not None:
            source["if"] = self.condition_raw
        for entry in self.entries:
            out.append(
                {
                    "id": f"{self.name}:entry:{entry}",
                    "source": source,
                    "destination": self._destination(entry),
                }
            )
        for node_id in sorted(self.edges):
            for edge in self.edges[node_id]:
                src: dict[str, Any] = {"pipeline": self.name, "step_id": node_id}
                if edge.label is not None:
                    src["event_type"] = edge.label
                out.append(
                    {
                        # The label keeps a switch's true and false edges to one step apart.
                        "id": f"{self.name}:{node_id}->{edge.target}" + (f"[{edge.label}]" if edge.label else ""),
                        "source": src,
                        "destination": self._destination(edge.target),
                    }
                )
        for node_id in self.terminals:
            out.append(
                {
                    "id": f"{self.name}:{node_id}:terminal",
                    "source": {"pipeline": self.name, "step_id": node_id},
                    "destination": {"kind": "terminal"},
                }
            )
        return out

    def _destination(self, node_id: str) -> dict[str, Any]:
        node = self.nodes[node_id]
        kind = {"step": "step", "switch": "switch", "relay": "relay"}[node.kind]
        return {"kind": kind, "step_id": node.id, "plugin": node.plugin, "command": node.command}
