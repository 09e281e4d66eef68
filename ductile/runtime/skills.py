"""The ``/skills`` entries (api.md §4.1), shared by the API route and ``ductile skills``."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ductile.runtime.catalog import Catalog


class Skill(msgspec.Struct, kw_only=True):
    """A ``/skills`` entry (api.md §4.1): a plugin command (``tier``, ``plugin``, ``command``) or a
    pipeline (``pipeline``, ``trigger``, ``execution_mode``, and ``timeout_secs`` when synchronous).
    One Struct with the keys of both, in the order each kind answers them, so the bytes are the ones
    each kind has always had."""

    name: str
    kind: Literal["plugin", "pipeline"]
    description: str | UnsetType = UNSET
    endpoint: str
    tier: Literal["READ", "WRITE"] | UnsetType = UNSET
    plugin: str | UnsetType = UNSET
    command: str | UnsetType = UNSET
    pipeline: str | UnsetType = UNSET
    trigger: str | UnsetType = UNSET
    execution_mode: Literal["asynchronous", "synchronous"] | UnsetType = UNSET
    timeout_secs: int | float | UnsetType = UNSET


class SkillList(msgspec.Struct):
    skills: list[Skill]


def plugin_entries(catalog: Catalog) -> list[dict[str, Any]]:
    """``/skills`` plugin entries, sorted by plugin then command (api.md §4.1)."""
    entries = []
    for name in sorted(catalog.plugins):
        for c in sorted(catalog.plugins[name].manifest.commands, key=lambda c: c.name):
            entry: dict[str, Any] = {"name": f"plugin.{name}.{c.name}", "kind": "plugin"}
            if c.description:
                entry["description"] = c.description
            entry.update({"endpoint": f"/plugin/{name}/{c.name}", "tier": "READ" if c.type == "read" else "WRITE",
                          "plugin": name, "command": c.name})
            entries.append(entry)
    return entries


def pipeline_entries(pipelines: list[Any]) -> list[dict[str, Any]]:
    """``/skills`` pipeline entries from the raw ``pipelines:`` lists, sorted by name."""
    from ductile.formats.durations import DurationError, parse_duration_seconds
    from ductile.pipelines.graph import DEFAULT_PIPELINE_TIMEOUT

    entries = []
    for raw in pipelines:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
            continue
        name = raw["name"].strip()
        trigger = raw.get("on") if raw.get("on") is not None else raw.get("on-hook")
        mode = str(raw.get("execution_mode") or "async").strip().lower()
        synchronous = mode in ("sync", "synchronous")
        entry: dict[str, Any] = {
            "name": f"pipeline.{name}", "kind": "pipeline", "endpoint": f"/pipeline/{name}", "pipeline": name,
            "trigger": "" if trigger is None else str(trigger).strip(),
            "execution_mode": "synchronous" if synchronous else "asynchronous",
        }
        if synchronous:
            try:
                seconds = parse_duration_seconds(raw["timeout"]) if "timeout" in raw else DEFAULT_PIPELINE_TIMEOUT
            except DurationError:
                seconds = None
            if seconds:
                entry["timeout_secs"] = int(seconds) if seconds == int(seconds) else seconds
        entries.append(entry)
    return sorted(entries, key=lambda e: e["pipeline"])


def skills(catalog: Catalog, pipelines: list[Any]) -> list[dict[str, Any]]:
    """Plugins sorted by plugin then command, then pipelines by name."""
    return plugin_entries(catalog) + pipeline_entries(pipelines)
