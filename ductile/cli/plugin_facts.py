"""``ductile system plugin-facts <plugin>``: the facts a plugin's ``fact_outputs`` appended,
newest first (plugins.md §8), read from the ``plugin_state`` projection, gateway running or not."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from ductile.cli.output import fail

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]
HEADERS = ("SEQ", "FACT_TYPE", "COMMAND", "JOB", "CREATED", "FACT")


def plugin_facts(
    plugin: str,
    *,
    fact_type: Annotated[str | None, Parameter(name="--fact-type", help="Only facts of this fact_type.")] = None,
    limit: Annotated[int, Parameter(help="How many facts (newest first).")] = 20,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    json: bool = False,
) -> int:
    """PLUGIN's appended facts, newest first: table SEQ FACT_TYPE COMMAND JOB CREATED plus the fact JSON."""
    import msgspec

    from ductile.cli.common import read_state_sync, resolve
    from ductile.cli.output import emit_json, print_table
    from ductile.projections.plugin_state import list_facts

    if limit <= 0:
        raise fail("--limit must be > 0", json=json)
    cfg = resolve(config, config_dir)
    facts = read_state_sync(cfg.store(), lambda cur: list_facts(cur, plugin, fact_type, limit))
    # Facts outlive a plugin's removal from the config (they are never pruned), so only a name
    # that is neither configured nor in the log is an error.
    if not facts and plugin not in cfg.plugins:
        raise fail(f"plugin not found: {plugin}", json=json)
    if json:
        document: dict[str, object] = {"plugin": plugin}
        if fact_type is not None:
            document["fact_type"] = fact_type
        document["facts"] = facts
        emit_json(document)
        return 0
    print_table(HEADERS, [[f.seq, f.fact_type, f.command, f.job_id, f.created_at, msgspec.json.encode(f.fact).decode()]
                          for f in facts])
    return 0
