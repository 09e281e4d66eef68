"""``config show`` and ``config get`` (config.md §9): the resolved config, redacted, as YAML or
JSON; one value; each plugin's effective settings tagged explicit or default. The documents come
from ductile/config/resolved.py; this module parses, picks and prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import Parameter

from ductile.cli.output import CliFailure, emit_json

if TYPE_CHECKING:
    from ductile.config.model import Config

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]


def show(entity: Annotated[str | None, Parameter(help="A dot path, plugin:<name>, plugin:*, webhook:<path-or-plugin>, "
                                                      "webhook:*, pipeline:<name>; with --effective, a plugin.")] = None,
         /, *, json: bool = False,
         effective: Annotated[bool, Parameter(help="Per plugin: each runtime setting, explicit or default.")] = False,
         config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """The resolved config (defaults applied), secrets redacted, as YAML or JSON.

    **Examples:**

        ductile config show
        ductile config show plugins.echo --effective --json
    """
    from ductile.cli.common import resolve_verified

    cfg = resolve_verified(config, config_dir)  # a full load (config.md §6.3)
    try:
        if effective:
            names = [_plugin_name(entity)] if entity else sorted(cfg.plugins)
            data = {n: _effective(cfg, n) for n in names}
            if json:
                emit_json(data)
            else:
                for name, fields in data.items():
                    print(f"{name}:")
                    for field, value in fields.items():
                        print(f"  {field}: {value.human()}")
            return 0
        value = _entity(cfg, entity)
    except CliFailure as exc:
        raise CliFailure(f"config show: {exc.message}", json_written=False) from None
    if json:
        emit_json(value)
    else:
        print(_yaml(value), end="")
    return 0


def get(path: Annotated[str, Parameter(help="a.b.c, a.b[0], plugin:<name>.<field>; with --effective "
                                            "<plugin>[.<field>].")], /, *, json: bool = False,
        effective: Annotated[bool, Parameter(help="The value with its source (explicit or default).")] = False,
        config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """One value of the resolved config (secrets redacted).

    **Examples:**

        ductile config get api.listen
        ductile config get plugins.echo --effective --json
    """
    from ductile.cli.common import resolve_verified
    from ductile.config.keypaths import KeyPathError, lookup, parse_key_path
    from ductile.config.resolved import resolved_document

    cfg = resolve_verified(config, config_dir)  # a full load (config.md §6.3)
    if effective:
        plugin, _, field = path.removeprefix("plugin:").partition(".")
        try:
            fields = _effective(cfg, plugin)
        except CliFailure as exc:
            raise CliFailure(f"config get: {exc.message}") from None
        if not field:
            if json:
                emit_json(fields)
            else:
                for name, value in fields.items():
                    print(f"{name}: {value.human()}")
            return 0
        if field not in fields:
            raise CliFailure(f'config get: no such key "plugins.{plugin}.{field}" (effective fields: '
                             f'{", ".join(fields)})')
        chosen = fields[field]
        if json:
            emit_json({"value": chosen.value, "source": chosen.source})
        else:
            print(chosen.human())
        return 0
    try:
        value = lookup(resolved_document(cfg), parse_key_path(path))
    except KeyPathError as exc:
        raise CliFailure(f"config get: {exc}") from None
    if json:
        emit_json({"value": value})
    else:
        print(_yaml(value), end="")
    return 0


def _plugin_name(text: str) -> str:
    return text.removeprefix("plugin:")


def _effective(cfg: Config, name: str) -> dict[str, Any]:
    from ductile.config.resolved import effective_plugin
    from ductile.plugins.discovery import discover

    entry = cfg.plugins.get(name)
    if entry is None:
        raise CliFailure(f'plugin "{name}" is not configured')
    # The manifest decides the default parallelism (§4.4); an undiscovered plugin keeps max_workers.
    found = discover(cfg.plugin_roots, cfg.service.allow_symlinks)[0].get(entry.uses or name)
    return effective_plugin(cfg, entry, concurrency_safe=found.manifest.concurrency_safe if found else True)


def _entity(cfg: Config, entity: str | None) -> Any:
    """The part of the resolved document an entity names (config.md §9)."""
    from ductile.config.keypaths import KeyPathError, lookup, parse_key_path
    from ductile.config.resolved import resolved_document

    document = resolved_document(cfg)
    if entity is None:
        return document
    kind, colon, name = entity.partition(":")
    if colon and kind == "plugin":
        plugins = document.get("plugins") or {}
        if name == "*":
            return plugins
        if name not in plugins:
            raise CliFailure(f'plugin "{name}" is not configured')
        return plugins[name]
    if colon and kind == "webhook":
        endpoints = _webhook_endpoints(document.get("webhooks"))
        if name == "*":
            return endpoints
        chosen = [e for e in endpoints if isinstance(e, dict) and name in (e.get("path"), e.get("plugin"))]
        if not chosen:
            raise CliFailure(f'no webhook endpoint with path or plugin "{name}"')
        return chosen[0] if len(chosen) == 1 else chosen
    if colon and kind == "pipeline":
        for pipeline in document.get("pipelines") or []:
            if isinstance(pipeline, dict) and pipeline.get("name") == name:
                return pipeline
        raise CliFailure(f'pipeline "{name}" is not configured')
    try:
        return lookup(document, parse_key_path(entity))
    except KeyPathError as exc:
        raise CliFailure(str(exc)) from None


def _webhook_endpoints(webhooks: Any) -> list[Any]:
    """Both forms of webhooks.md §1: ``webhooks: {endpoints: [...]}`` and the flat list."""
    if isinstance(webhooks, list):
        return webhooks
    if isinstance(webhooks, dict):
        return list(webhooks.get("endpoints") or [])
    return []


def _yaml(value: Any) -> str:
    import yaml

    if isinstance(value, bool):
        return ("true" if value else "false") + "\n"
    if value is None:
        return "null\n"
    if isinstance(value, str | int | float):
        return f"{value}\n"
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
