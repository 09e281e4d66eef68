"""``load_config``: discovery result in, validated Config out (spec config.md §2–§5)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import msgspec

from ductile.config.api import build_api
from ductile.config.context import BuildContext
from ductile.config.discovery import ConfigSource
from ductile.config.documents import Document, read_document
from ductile.config.duplicates import duplicate_names
from ductile.config.errors import ConfigError, raise_collected
from ductile.config.includes import IncludeWalk
from ductile.config.interpolation import find_unresolved, interpolate_text, plain
from ductile.config.locations import KeyPath, dotted
from ductile.config.merging import merge_documents
from ductile.config.model import ApiConfig, Config, Diagnostic, SecretsConfig, ServiceConfig
from ductile.config.paths import home_directory, resolve_path
from ductile.config.plaintext import ConfigKeys
from ductile.config.plugins import build_plugins
from ductile.config.schema import RootSchema
from ductile.config.service import build_service
from ductile.config.shapes import check_shape
from ductile.config.symlinks import check_symlinks
from ductile.config.webhooks import check_webhooks
from ductile.events.store import StoreUrl, is_postgres_url, mask_password

DEFAULT_STATE_PATH = "data/ductile.db"
DEFAULT_VAULT_FILE = "vault.age"

# Path keys where an undefined ${VAR} can never be right (§3.1).
_PATH_KEYS: frozenset[KeyPath] = frozenset(
    {
        ("state", "path"),
        ("state", "url"),
        ("database", "path"),
        ("secrets", "age_key_file"),
        ("secrets", "vault_file"),
        ("api", "management_socket"),
    }
)


class LoadResult(msgspec.Struct, frozen=True):
    """A full load that keeps going past independent errors (config.md §5): every load error it
    could find, each a ConfigError with its ``file:line`` where known. ``config`` is None when
    there is any error."""

    config: Config | None
    errors: list[ConfigError]
    warnings: list[Diagnostic]
    # The config as built with defaults standing in for the sections that failed, when every file
    # parsed and the sections could be built: enough to find state.path, the roots and the files
    # read (``system backup`` of a config that does not validate, operations.md §7). Never run it.
    partial: Config | None = None


def load_config(source: ConfigSource, environ: MutableMapping[str, str] | None = None) -> Config:
    """Read, merge, interpolate and validate the config. Any load error is a ConfigError; several
    are one ConfigErrors whose message holds one error per line.

    Variables from ``environment_vars.include`` files are added to ``environ`` (default
    ``os.environ``) without overwriting what is already there.
    """
    result = collect_config(source, environ)
    raise_collected(result.errors)
    assert result.config is not None  # no error means a config was built
    return result.config


def collect_config(source: ConfigSource, environ: MutableMapping[str, str] | None = None) -> LoadResult:
    """``load_config`` that returns every load error it finds instead of raising the first."""
    env = os.environ if environ is None else environ
    home = home_directory(env)
    errors: list[ConfigError] = []
    try:
        walk = IncludeWalk(source, env, home, errors).run()
    except ConfigError as error:  # the root file itself: nothing to go on with
        return LoadResult(config=None, errors=[error], warnings=[])
    warnings: list[Diagnostic] = list(walk.warnings)
    shapes_ok = True
    for document in walk.documents:
        try:
            warnings.extend(_shape_warnings(document))
        except ConfigError as error:
            errors.append(error)
            shapes_ok = False

    merged = merge_documents(walk.documents)
    ctx = BuildContext(merged.origins, source.config_dir, home, walk.documents[0].name)
    _check_unresolved(merged.data, ctx)
    errors.extend(duplicate_names(merged.data, merged.origins))
    # A value of the wrong type, or an unset variable in a path, would only fail again (and
    # less clearly) in the section builders: report what was found so far.
    if not shapes_ok or ctx.errors:
        return LoadResult(config=None, errors=[*errors, *ctx.errors], warnings=warnings)

    raw = plain(merged.data)
    _mask_in_reprs(raw)
    try:
        schema = msgspec.convert(raw, RootSchema, strict=True)
    except msgspec.ValidationError as error:  # shapes.py checked every file; kept as a safety net
        errors.append(ConfigError(f"invalid configuration: {error}", file=ctx.root_name))
        return LoadResult(config=None, errors=[*errors, *ctx.errors], warnings=warnings)

    # Each section is built on its own: a bad one is recorded and the next is still checked,
    # with defaults standing in for what failed.
    service = ctx.attempt(lambda: build_service(schema.service, ctx), ServiceConfig())
    state_path = ctx.attempt(lambda: _state_path(schema, ctx), source.config_dir / DEFAULT_STATE_PATH)
    state_url = ctx.attempt(lambda: _state_url(schema, ctx), None)
    plugin_roots = ctx.attempt(lambda: _plugin_roots(schema, ctx), [])
    api = ctx.attempt(lambda: build_api(schema.api, ctx, state_path), ApiConfig())
    plugins = build_plugins(schema.plugins or {}, ctx, service.max_workers, merged.plugin_files)
    secrets = ctx.attempt(lambda: _secrets(schema, ctx), SecretsConfig())
    webhooks, webhook_errors = check_webhooks(raw.get("webhooks"), ctx, plugins)
    ctx.errors.extend(webhook_errors)
    warnings.extend(ctx.attempt(lambda: check_symlinks([*walk.files, *plugin_roots], service.allow_symlinks), []))
    warnings.extend(ctx.warnings)
    errors.extend(ctx.errors)
    config = Config(
        source=source,
        service=service,
        state_path=state_path,
        state_url=state_url,
        plugin_roots=plugin_roots,
        api=api,
        plugins=plugins,
        pipelines=list(raw.get("pipelines") or []),
        webhooks=webhooks,
        raw=raw,
        files=list(walk.files),
        env_files=list(walk.env_files),
        warnings=warnings,
        secrets=secrets,
        locations=merged.origins.as_dotted(),
        interpolated=merged.origins.templates(),
    )
    if errors:
        return LoadResult(config=None, errors=errors, warnings=warnings, partial=config)
    return LoadResult(config=config, errors=[], warnings=warnings)


def _shape_warnings(document: Document) -> list[Diagnostic]:
    warnings = [
        Diagnostic(
            level="warning",
            category="config",
            field=dotted(finding.path),
            message=finding.message,
            file=document.name,
            line=document.line(finding.path),
        )
        for finding in check_shape(document.data, document.name, document.lines)
    ]
    if "tokens" in document.data:
        warnings.append(
            Diagnostic(
                level="warning",
                category="config",
                field="tokens",
                message=(
                    "tokens.yaml is no longer read for secrets; "
                    f"migrate with 'ductile vault import --tokens {document.path}'"
                ),
                file=document.name,
                line=document.line(("tokens",)),
            )
        )
    return warnings


def _check_unresolved(merged: dict[str, Any], ctx: BuildContext) -> None:
    plugins = merged.get("plugins") if isinstance(merged.get("plugins"), dict) else {}
    for path, value in find_unresolved(merged):
        variable = "${" + value.missing[0] + "}"
        if path in _PATH_KEYS or path[0] == "plugin_roots":
            ctx.errors.append(ctx.error(f"{dotted(path)}: environment variable {variable} is not set", path))
            continue
        if len(path) == 5 and path[:3] == ("api", "auth", "tokens") and path[4] == "token":
            ctx.errors.append(ctx.error(f"{dotted(path[:4])}: environment variable {variable} is not set", path))
            continue
        if len(path) >= 3 and path[0] == "plugins" and path[2] == "config":
            entry = plugins.get(path[1])
            if isinstance(entry, dict) and entry.get("enabled") is True:
                ctx.errors.append(ctx.error(f'plugin "{path[1]}": environment variable {variable} is not set', path))
                continue
        ctx.warn("config", path, f"environment variable {variable} is not set; the literal is kept")


def _state_path(schema: RootSchema, ctx: BuildContext) -> Path:
    """The state DB file, or with ``state.url`` where the gateway's local files (the PID lock,
    the records directories beside it) live: the default path's directory."""
    text = DEFAULT_STATE_PATH
    if schema.state is not None and schema.state.path:
        text = schema.state.path
    elif schema.database is not None and schema.database.path:
        text = schema.database.path
    return resolve_path(text, ctx.config_dir, ctx.home)


def _mask_in_reprs(raw: dict[str, Any]) -> None:
    """``state.url`` as a ``StoreUrl``: a repr of the config (or of its raw mapping) masks the password."""
    state = raw.get("state")
    if isinstance(state, dict) and isinstance(state.get("url"), str):
        state["url"] = StoreUrl(state["url"])


def _state_url(schema: RootSchema, ctx: BuildContext) -> StoreUrl | None:
    url = schema.state.url if schema.state is not None else None
    if url is None:
        return None
    if (schema.state is not None and schema.state.path) or (schema.database is not None and schema.database.path):
        raise ctx.error("state: set either path (SQLite) or url (PostgreSQL), not both", ("state", "url"))
    if not is_postgres_url(url):
        # The text may hold a password: only its masked form is shown.
        raise ctx.error(f"state.url: {mask_password(url)!r} is not a postgresql:// URL", ("state", "url"))
    return StoreUrl(url)


def _plugin_roots(schema: RootSchema, ctx: BuildContext) -> list[Path]:
    # A blank entry (often an unset-but-empty ${VAR}) names no directory; resolved, it would
    # silently make the config dir itself a plugin root.
    given = [(index, text) for index, text in enumerate(schema.plugin_roots or []) if text.strip()]
    if not given:
        raise ctx.error("plugin_roots is required (at least one directory)", ("plugin_roots",))
    roots: list[Path] = []
    for index, text in given:
        root = resolve_path(text, ctx.config_dir, ctx.home)
        if not root.is_dir():
            raise ctx.error(f"plugin_roots[{index}]: {root} is not a directory", ("plugin_roots", index))
        roots.append(root)
    return roots


def configured_vault_file(source: ConfigSource, environ: MutableMapping[str, str], keys: ConfigKeys) -> Path:
    """``secrets.vault_file`` (default ``<configDir>/vault.age``) from the root file alone.

    ``secrets.*`` is root-only (§2), so a caller that only needs the vault's path (``secrets
    rotate`` refusing it) need not load, decrypt and validate the whole config. ``keys`` decrypts
    an encrypted root.
    """
    home = home_directory(environ)
    root = read_document(source.root_file, source.config_dir, is_root=True, keys=keys)
    given = root.data.get("secrets")
    text = given.get("vault_file") if isinstance(given, dict) else None
    if not isinstance(text, str) or not text.strip():
        text = DEFAULT_VAULT_FILE
    return resolve_path(interpolate_text(text, environ), source.config_dir, home)


def _secrets(schema: RootSchema, ctx: BuildContext) -> SecretsConfig:
    given = schema.secrets
    age_key_file = given.age_key_file if given is not None else None
    vault_file = given.vault_file if given is not None and given.vault_file else DEFAULT_VAULT_FILE
    return SecretsConfig(
        age_key_file=resolve_path(age_key_file, ctx.config_dir, ctx.home) if age_key_file else None,
        vault_file=resolve_path(vault_file, ctx.config_dir, ctx.home),
    )
