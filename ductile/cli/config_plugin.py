"""``config plugin list|show`` (cli.md §2.3): discovered versus configured plugins, read from the
config dir (the gateway need not run). The use case is ductile/app/config_plugins.py."""

from __future__ import annotations

from typing import Annotated, Literal

from cyclopts import App, Parameter

from ductile.cli.output import CliFailure, emit_json, print_table

app = App(name="plugin", help="Plugins discovered under plugin_roots versus configured: list, show.")

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]


@app.command(name="list")
def list_(*, format: Literal["human", "json"] = "human", json: bool = False,
          config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """Every plugin discovered or configured: version, enabled, commands, path.

    **Examples:**

        ductile config plugin list
        ductile config plugin list --json
    """
    from ductile.app.config_plugins import plugin_rows
    from ductile.cli.common import resolve

    rows = plugin_rows(resolve(config, config_dir))
    if json or format == "json":
        emit_json({"plugins": rows})
        return 0
    print_table(["name", "version", "enabled", "configured", "uses", "commands", "path"],
                [[r.name, r.version, _yes(r.enabled), _yes(r.configured), r.uses,
                  ",".join(f"{c.name}:{c.type}" for c in r.commands), r.path] for r in rows])
    return 0


@app.command
def show(name: str, /, *, json: bool = False, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """One plugin: manifest summary, effective config with sources, schedules, fingerprint status.

    **Examples:**

        ductile config plugin show echo
        ductile config plugin show echo --json
    """
    import os

    from ductile.app.config_plugins import PluginNotFound, plugin_detail
    from ductile.cli.common import resolve
    from ductile.config.resolved import EffectiveValue

    try:
        detail = plugin_detail(resolve(config, config_dir), name, os.environ)
    except PluginNotFound as exc:
        raise CliFailure(str(exc)) from None
    if json:
        emit_json(detail)
        return 0
    manifest = detail.manifest
    if manifest is None:
        print(f"{detail.name} (not discovered under plugin_roots)")
    else:
        print(f"{detail.name} {manifest['version']} (protocol {manifest['protocol']})")
        if manifest["description"]:
            print(manifest["description"])
        print_table(["command", "type", "description"],
                    [[c["name"], c["type"], c["description"]] for c in manifest["commands"]])
    if detail.config:
        print("\nConfig:")
        for field, value in detail.config.items():
            shown = value.human() if isinstance(value, EffectiveValue) else value
            print(f"  {field}: {shown}")
    print("\nSchedules:" if detail.schedules else "\nSchedules: -")
    for schedule in detail.schedules:
        print(f"  - {schedule}")
    fp = detail.fingerprint
    status = "not recorded" if not fp.recorded else {True: "matches", False: "MISMATCH", None: "recorded"}[fp.matches]
    print(f"\nFingerprint: {status}")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
