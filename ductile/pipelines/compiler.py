"""Validate ``pipelines:`` and compile each pipeline to a graph (pipelines.md §1–§3.1).

Every problem is collected, not only the first: load errors refuse the config (boot exits 1,
a reload is rejected); a ``uses``/``from_plugin`` naming a configured but disabled plugin is a
doctor error that leaves only that pipeline out. Messages are
``pipeline "<name>": <detail>`` or ``pipeline "<name>" step "<id>": <detail>``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ductile.formats.durations import DurationError, parse_duration_seconds
from ductile.pipelines.baggage import compile_baggage
from ductile.pipelines.conditions import compile_condition
from ductile.pipelines.errors import LoadProblems
from ductile.pipelines.graph import (
    DEFAULT_PIPELINE_TIMEOUT,
    RELAY_PLUGIN,
    SWITCH_FALSE,
    SWITCH_PLUGIN,
    SWITCH_TRUE,
    Edge,
    Node,
    Pipeline,
)
from ductile.pipelines.templates import compile_with

HOOK_SIGNALS = ("job.completed", "job.failed", "job.timed_out")
STEP_KINDS = ("uses", "call", "steps", "split", "relay")
PIPELINE_KEYS = frozenset(
    {"name", "on", "on-hook", "from_plugin", "if", "max_depth", "execution_mode", "timeout", "steps"}
)
STEP_KEYS = frozenset({"id", *STEP_KINDS, "with", "baggage", "if"})
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NAME = re.compile(r"^[^\s/]+$")

Exit = tuple[str, str | None]  # (node id, edge label for the edges leaving it at this exit)


@dataclass
class Fragment:
    entries: list[str]
    exits: list[Exit]


@dataclass
class Compiled:
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # load errors: the config is refused
    doctor: list[str] = field(default_factory=list)  # left out, logged at ERROR
    warnings: list[str] = field(default_factory=list)


class _Builder:
    def __init__(
        self,
        name: str,
        raw_by_name: Mapping[str, dict[str, Any]],
        enabled: set[str],
        configured: set[str],
        out: Compiled,
        configured_enabled: set[str] | None = None,
        relay_instances: Collection[str] = (),
    ) -> None:
        self.name = name
        self.relay_instances = relay_instances
        self.raw_by_name = raw_by_name
        self.enabled = enabled
        self.configured = configured
        self.configured_enabled = enabled if configured_enabled is None else configured_enabled
        self.out = out
        self.nodes: dict[str, Node] = {}
        self.edges: dict[str, list[Edge]] = {}
        self.ids: set[str] = set()
        self.counter = 0
        self.left_out = False
        self.failed = False

    def error(self, detail: str, step: str | None = None) -> None:
        self.failed = True
        where = f'pipeline "{self.name}" step "{step}"' if step else f'pipeline "{self.name}"'
        for line in detail.splitlines():
            self.out.errors.append(f"{where}: {line}")

    def unavailable(self, plugin: str) -> None:
        """A configured plugin that does not run: the pipeline is left out (a doctor error)."""
        state = "is disabled" if plugin not in self.configured_enabled else "is not loaded (see its plugin error)"
        problem = f'pipeline "{self.name}": uses "{plugin}" {state}'
        if problem not in self.out.doctor:
            self.out.doctor.append(problem)
        self.left_out = True

    def edge(self, src: str, dst: str, label: str | None) -> None:
        self.edges.setdefault(src, []).append(Edge(dst, label))

    def connect(self, exits: list[Exit], entries: list[str]) -> None:
        for node, label in exits:
            for entry in entries:
                self.edge(node, entry, label)

    def sequence(self, raw_steps: Any, prefix: str, calls: tuple[str, ...], where: str | None) -> Fragment:
        if not isinstance(raw_steps, list) or not raw_steps:
            self.error("steps must not be empty", where)
            return Fragment([], [])
        frags = [self.step(s, prefix, calls) for s in raw_steps]
        frags = [f for f in frags if f.entries]
        if not frags:
            return Fragment([], [])
        for a, b in itertools.pairwise(frags):
            self.connect(a.exits, b.entries)
        return Fragment(frags[0].entries, frags[-1].exits)

    def step(self, raw: Any, prefix: str, calls: tuple[str, ...]) -> Fragment:
        self.counter += 1
        if not isinstance(raw, dict):
            self.error(f"step {self.counter} must be a map")
            return Fragment([], [])
        sid = raw.get("id", f"step_{self.counter}")
        if not isinstance(sid, str) or not _STEP_ID.match(sid) or sid.endswith("__switch"):
            self.error(f'invalid step id "{sid}"')
            sid = f"step_{self.counter}"
        full = prefix + sid
        if full in self.ids:
            self.error(f'duplicate step id "{full}"')
        self.ids.add(full)
        for key in raw:
            if key not in STEP_KEYS:
                self.out.warnings.append(
                    f'pipeline "{self.name}" step "{full}": unknown key "{key}" (ignored)'
                )
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            self.error("step must have exactly one of uses, call, steps, split, relay", full)
            return Fragment([], [])
        kind = kinds[0]
        for extra in ("with", "baggage"):
            if extra in raw and kind != "uses":
                self.error(f"{extra} is only allowed on uses steps", full)
        frag, gated = self._body(kind, raw, full, prefix, calls)
        if "if" not in raw or not frag.entries:
            return frag
        try:
            condition = compile_condition(raw["if"], roots=("payload", "context", "config"))
        except LoadProblems as exc:
            self.error(str(exc), full)
            return frag
        switch = f"{full}__switch"
        self.nodes[switch] = Node(
            switch, "switch", SWITCH_PLUGIN, command="switch", condition=condition, gates=full
        )
        for entry in frag.entries:
            self.edge(switch, entry, SWITCH_TRUE)
        if gated:
            # A gated uses/relay step is still created when false, then skipped: it routes on.
            for entry in frag.entries:
                self.edge(switch, entry, SWITCH_FALSE)
            return Fragment([switch], frag.exits)
        # A gated steps/split/call: false bypasses everything nested in it.
        return Fragment([switch], [*frag.exits, (switch, SWITCH_FALSE)])

    def _body(
        self, kind: str, raw: dict[str, Any], full: str, prefix: str, calls: tuple[str, ...]
    ) -> tuple[Fragment, bool]:
        value = raw[kind]
        if kind == "uses":
            return self._uses(value, raw, full), True
        if kind == "relay":
            if not isinstance(value, dict) or not value.get("to"):
                self.error("relay.to is required", full)
            elif value["to"] not in self.relay_instances:
                self.error(f'relay.to "{value["to"]}": unknown relay instance', full)
            self.nodes[full] = Node(full, "relay", RELAY_PLUGIN)
            return Fragment([full], [(full, None)]), True
        if kind == "steps":
            # Nested steps keep their own ids; only call inlining adds a prefix.
            return self.sequence(value, prefix=prefix, calls=calls, where=full), False
        if kind == "split":
            if not isinstance(value, list) or not value:
                self.error("split must not be empty", full)
                return Fragment([], []), False
            branches = [self.step(b, prefix, calls) for b in value]
            return Fragment(
                [e for b in branches for e in b.entries], [x for b in branches for x in b.exits]
            ), False
        # call
        target = value if isinstance(value, str) else ""
        if target not in self.raw_by_name:
            self.error(f'call "{value}": unknown pipeline', full)
            return Fragment([], []), False
        if target in calls or target == self.name:
            self.error(f"call cycle: {' -> '.join((*calls, target))}", full)
            return Fragment([], []), False
        saved = self.counter
        self.counter = 0  # the callee numbers its own steps; inlined ids are <call-id>/<inner-id>
        frag = self.sequence(
            self.raw_by_name[target].get("steps"), prefix=f"{full}/", calls=(*calls, target), where=full
        )
        self.counter = saved
        return frag, False

    def _uses(self, value: Any, raw: dict[str, Any], full: str) -> Fragment:
        plugin = value if isinstance(value, str) else ""
        if "." in plugin:
            base, _, command = plugin.rpartition(".")
            if command != "handle":
                self.error(f'uses "{value}": pipeline steps always run handle', full)
            plugin = base
        if plugin not in self.configured:
            self.error(f'uses "{plugin}" is not a configured plugin', full)
        elif plugin not in self.enabled:
            self.unavailable(plugin)
        with_spec = baggage = None
        if "with" in raw:
            try:
                with_spec = compile_with(raw["with"])
            except LoadProblems as exc:
                self.error(str(exc), full)
        if "baggage" in raw:
            try:
                baggage = compile_baggage(raw["baggage"])
            except LoadProblems as exc:
                self.error(str(exc), full)
        self.nodes[full] = Node(full, "step", plugin, with_spec=with_spec, baggage=baggage)
        return Fragment([full], [(full, None)])


def longest_path(nodes: dict[str, Node], edges: dict[str, list[Edge]], entries: list[str]) -> int | None:
    """Nodes on the longest path from the entries; None when the graph has a cycle."""
    memo: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(n: str) -> int | None:
        if n in memo:
            return memo[n]
        if n in visiting:
            return None
        visiting.add(n)
        best = 0
        for e in edges.get(n, []):
            d = depth(e.target)
            if d is None:
                return None
            best = max(best, d)
        visiting.discard(n)
        memo[n] = best + 1
        return memo[n]

    results = [depth(e) for e in entries]
    if any(r is None for r in results):
        return None
    return max((r for r in results if r is not None), default=0)


def compile_pipelines(
    raw_pipelines: list[Any],
    *,
    enabled: set[str],
    configured: set[str],
    configured_enabled: set[str] | None = None,
    relay_instances: Collection[str] = (),
) -> Compiled:
    """``enabled``: plugins that run; ``configured_enabled``: those the config enables (an
    enabled plugin that failed to load is reported as not loaded rather than disabled);
    ``relay_instances``: the names under ``instances:``, the only valid ``relay.to`` targets."""
    out = Compiled()
    raw_by_name: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(raw_pipelines):
        if not isinstance(raw, dict):
            out.errors.append(f"pipelines[{i}]: must be a map")
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            out.errors.append(f"pipelines[{i}]: name is required")
            continue
        if not _NAME.match(name.strip()):
            out.errors.append(f'pipeline "{name}": name must not contain whitespace or "/"')
            continue
        raw_by_name.setdefault(name.strip(), raw)  # duplicates across files are refused by the loader
    for name, raw in raw_by_name.items():
        pipeline = _compile_one(name, raw, raw_by_name, enabled, configured, out, configured_enabled, relay_instances)
        if pipeline is not None:
            out.pipelines[name] = pipeline
    return out


def _compile_one(
    name: str,
    raw: dict[str, Any],
    raw_by_name: Mapping[str, dict[str, Any]],
    enabled: set[str],
    configured: set[str],
    out: Compiled,
    configured_enabled: set[str] | None = None,
    relay_instances: Collection[str] = (),
) -> Pipeline | None:
    b = _Builder(name, raw_by_name, enabled, configured, out, configured_enabled, relay_instances)
    for key in raw:
        if key not in PIPELINE_KEYS and not str(key).startswith("_"):
            out.warnings.append(f'pipeline "{name}": unknown key "{key}" (ignored)')
    on = raw.get("on")
    hook = raw.get("on-hook")
    if (on is None) == (hook is None):
        b.error("exactly one of on or on-hook is required")
    on = on.strip() if isinstance(on, str) else on
    if on is not None:
        if not isinstance(on, str) or not on:
            b.error("on must be a non-empty event type")
        elif on.startswith("ductile."):
            b.error("on must not use the reserved ductile. namespace")
    if hook is not None and hook not in HOOK_SIGNALS:
        b.error("on-hook must be one of job.completed, job.failed, job.timed_out")
    from_plugin = raw.get("from_plugin")
    if from_plugin is not None and not isinstance(from_plugin, str):
        b.error("from_plugin must be a plugin name")
        from_plugin = None
    if from_plugin is not None:
        if from_plugin not in configured:
            b.error(f'from_plugin "{from_plugin}" is not a configured plugin')
        elif from_plugin not in enabled:
            b.unavailable(from_plugin)
    condition = None
    if "if" in raw:
        try:
            condition = compile_condition(raw["if"], roots=("payload", "context"))
        except LoadProblems as exc:
            b.error(str(exc))
        else:
            if hook is not None and "context" in condition.roots_used:
                b.error("if: context.* is not allowed in on-hook pipelines")
                condition = None
    max_depth = raw.get("max_depth", 0)
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
        b.error("max_depth must be >= 0")
        max_depth = 0
    mode = str(raw.get("execution_mode", "async")).strip().lower()
    if mode not in ("async", "asynchronous", "sync", "synchronous"):
        b.error("execution_mode must be async or synchronous")
    timeout = DEFAULT_PIPELINE_TIMEOUT
    if "timeout" in raw:
        try:
            timeout = parse_duration_seconds(raw["timeout"])
        except DurationError:
            timeout = 0.0
        if timeout <= 0:
            b.error(f'invalid timeout "{raw["timeout"]}"')
    frag = b.sequence(raw.get("steps"), prefix="", calls=(name,), where=None)
    if b.failed or b.left_out:
        return None
    auto = longest_path(b.nodes, b.edges, frag.entries)
    if auto is None:
        b.error("pipeline graph is not acyclic")
        return None
    return Pipeline(
        name=name,
        on=on,
        on_hook=hook,
        from_plugin=from_plugin,
        condition=condition,
        condition_raw=raw.get("if"),
        max_depth=max_depth or auto,
        synchronous=mode in ("sync", "synchronous"),
        timeout=timeout,
        nodes=b.nodes,
        edges=b.edges,
        entries=frag.entries,
        terminals=sorted({n for n, _ in frag.exits}),
        source_file=str(raw.get("_file", "")),
    )
