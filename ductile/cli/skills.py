"""``ductile skills`` (= ``ductile system skills``): the LLM operator skill manifest (cli.md §2.1).

Built locally from the config and plugin discovery, so it works whether the gateway runs or not.
``--json`` prints the ``GET /skills`` body (api.md §4.1).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from cyclopts import Parameter

from ductile.cli.output import emit_json, fail
from ductile.runtime.skills import pipeline_entries, plugin_entries

TITLE = "# Ductile Gateway: LLM Operator Skill Manifest"
PLUGIN_FORMAT = ("Format: `<plugin>.<command> m=<HTTP> p=<path> tier=<READ|WRITE> mut=<0|1> idem=<0|1> "
                 "retry=<0|1> [in=<schema>] [out=<schema>] [d=<desc>]`")
PIPELINE_FORMAT = "Format: `<pipeline> m=<HTTP> p=<path> trigger=<trigger> mode=<sync|async> [timeout=<duration>]`"

CLI_COMMANDS = """\
## CLI

Run `ductile <noun> <verb> --help` for flags. Read commands take `--json` (one JSON document on
stdout). Gateway clients take `--api-url` (default `http://<api.listen>`) and `--api-key`
(default `$DUCTILE_API_KEY`); never put a secret value in argv otherwise.

- `ductile system status`: is the gateway running and healthy (config, state DB, PID lock, /healthz).
- `ductile system start` / `ductile system stop` / `ductile system reload`: run, stop, reload the gateway.
- `ductile skills`: this manifest.
- `ductile plugin list` / `ductile plugin show <name>`: the plugins the running gateway serves.
- `ductile plugin run <name> --command <cmd> --payload '<json object>' [--wait]`: enqueue one job.
- `ductile job list` / `ductile job logs` / `ductile job inspect <job_id>`: jobs, outcomes, lineage.
- `ductile system scheduler` / `ductile system breaker <plugin>` / `ductile system reset <plugin>`:
  schedules and circuit breakers.
- `ductile system rebuild`: rebuild the read models from the event log (gateway stopped).
- `ductile system doctor`: diagnose config, plugins, schedules, vault, disk and state, gateway running or not.
- `ductile system plugin-facts <plugin> [--fact-type T] [--limit 20]`: a plugin's appended facts, newest first.
- `ductile api <endpoint> [-X METHOD] [-f key=value …] [-b JSON|@file|-]`: any gateway route, e.g.
  `ductile api /plugin/<plugin>/<command> -f key=value` (fields go under `payload`) or
  `ductile api /job/<job_id>`.
"""

CORE_MODE = """\
Core mode: no config was found ($DUCTILE_CONFIG_DIR, ~/.config/ductile, /etc/ductile), so no plugins
or pipelines are listed. Load the full manifest with `ductile skills --config <config-dir>`, or
`export DUCTILE_CONFIG_DIR=<config-dir>` first.
"""


def _bit(value: bool) -> str:
    return "1" if value else "0"


def _quote(text: str) -> str:
    return msgspec.json.encode(text).decode()


def render_schema(schema: dict[str, Any] | None) -> str:
    """``{field: type, …}`` for a plain object schema (the compact manifest form), else compact JSON."""
    if not schema:
        return ""
    properties = schema.get("properties")
    if (set(schema) == {"type", "properties"} and schema["type"] == "object" and isinstance(properties, dict)
            and all(isinstance(p, dict) and set(p) == {"type"} and isinstance(p["type"], str)
                    for p in properties.values())):
        return "{" + ", ".join(f"{k}: {properties[k]['type']}" for k in sorted(properties)) + "}"
    return msgspec.json.encode(schema).decode()


def plugin_line(plugin: str, command: Any) -> str:
    """``<p>.<c> m=POST p=/plugin/<p>/<c> tier=… mut=… idem=… retry=… [in=…] [out=…] [d=…]``.

    ``idempotent`` and ``retry_safe`` default to true for ``read`` commands and false for
    ``write`` ones when the manifest does not say.
    """
    mutates = command.type != "read"
    idempotent = (not mutates) if command.idempotent is None else command.idempotent
    retry_safe = (not mutates) if command.retry_safe is None else command.retry_safe
    line = (f"{plugin}.{command.name} m=POST p=/plugin/{plugin}/{command.name} tier={'WRITE' if mutates else 'READ'}"
            f" mut={_bit(mutates)} idem={_bit(idempotent)} retry={_bit(retry_safe)}")
    if schema := render_schema(command.input_schema):
        line += f" in={_quote(schema)}"
    if schema := render_schema(command.output_schema):
        line += f" out={_quote(schema)}"
    if command.description:
        line += f" d={_quote(command.description)}"
    return line


def pipeline_line(entry: dict[str, Any]) -> str:
    """``<n> m=POST p=/pipeline/<n> trigger="…" mode=sync|async [timeout=…]``."""
    from ductile.config.durations import format_duration

    name = entry["pipeline"]
    line = (f"{name} m=POST p=/pipeline/{name} trigger={_quote(entry['trigger'])}"
            f" mode={'sync' if entry['execution_mode'] == 'synchronous' else 'async'}")
    if "timeout_secs" in entry:
        line += f" timeout={format_duration(entry['timeout_secs'])}"
    return line


def render_manifest(catalog: Any, pipelines: list[dict[str, Any]], config_path: str, api_url: str) -> str:
    out = [TITLE, "", f"Config: `{config_path}`. Gateway API: `{api_url}` (bearer token).", "", CLI_COMMANDS,
           "## Plugins", "", PLUGIN_FORMAT,
           "Invoke with `POST <path>` and the body `{\"payload\": {…}}`, e.g. `ductile api <path> -f key=value`.", ""]
    if not catalog.plugins:
        out += ["None enabled.", ""]
    for name in sorted(catalog.plugins):
        loaded = catalog.plugins[name]
        out += [f"### {name}", ""]
        if loaded.manifest.description:
            out += [loaded.manifest.description, ""]
        out += [plugin_line(name, c) for c in sorted(loaded.manifest.commands, key=lambda c: c.name)]
        out.append("")
    out += ["## Pipelines", "", PIPELINE_FORMAT, ""]
    out += [pipeline_line(p) for p in pipelines] or ["None configured."]
    out += ["", "---", "",
            "**Next steps:** trace any execution with `ductile job inspect <job_id>`; check health with "
            "`ductile system status`."]
    return "\n".join(out) + "\n"


def render_core_manifest() -> str:
    return "\n".join([TITLE, "", CORE_MODE, CLI_COMMANDS, "## Plugins", "", "None (no config loaded).", "",
                      "## Pipelines", "", "None (no config loaded).", ""])


def skills(
    *,
    config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None,
    json: Annotated[bool, Parameter(help="Print the GET /skills body: {skills:[…]}.")] = False,
) -> int:
    """Print the LLM operator skill manifest: CLI commands, plugin commands and pipelines."""
    from ductile.cli.client import listen_url
    from ductile.config.discovery import NOTHING_FOUND, find_config
    from ductile.config.errors import ConfigError
    from ductile.config.loader import load_config
    from ductile.plugins.discovery import DiscoveryError
    from ductile.runtime.catalog import load_catalog

    try:
        source = find_config(config, config_dir)
    except ConfigError as exc:
        if str(exc) == NOTHING_FOUND:
            if json:
                emit_json({"skills": []})
            else:
                print(render_core_manifest(), end="")
            return 0
        raise fail(str(exc), json=json, prefix="config error") from None
    try:
        cfg = load_config(source)
        catalog = load_catalog(cfg)
    except (ConfigError, DiscoveryError) as exc:
        raise fail(str(exc), json=json, prefix="config error") from None
    pipelines = pipeline_entries(cfg.pipelines)
    if json:
        emit_json({"skills": plugin_entries(catalog) + pipelines})
        return 0
    print(render_manifest(catalog, pipelines, str(source.root_file), listen_url(cfg.api.listen)), end="")
    return 0
