"""``plugins.<name>.*`` (spec config.md §4.4).

A disabled entry is only type-checked (shapes.py): if its values would not validate it still
loads, with defaults in place of the bad values, so an operator can park a broken entry.
"""

from __future__ import annotations

import re
from typing import Any

from ductile.config.context import BuildContext
from ductile.config.errors import ConfigError
from ductile.config.locations import KeyPath
from ductile.config.model import BreakerConfig, PluginEntry, RetryConfig
from ductile.config.schema import BreakerSchema, PluginSchema, RetrySchema

PRINCIPAL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def build_plugins(
    schemas: dict[str, PluginSchema | None], ctx: BuildContext, max_workers: int, source_files: dict[str, str]
) -> dict[str, PluginEntry]:
    entries: dict[str, PluginEntry] = {}
    for name, schema in schemas.items():
        given = schema or PluginSchema()
        source_file = source_files.get(name, "")
        if given.enabled:
            # Each entry is independent: a bad one is recorded and the others are still checked.
            try:
                entries[name] = _build(name, given, ctx, max_workers, source_file)
            except ConfigError as error:
                ctx.errors.append(error)
        else:
            entries[name] = _build_disabled(name, given, ctx, max_workers, source_file)
    return entries


def _build_disabled(
    name: str, given: PluginSchema, ctx: BuildContext, max_workers: int, source_file: str
) -> PluginEntry:
    if given.run_as:
        ctx.warn(
            "config", ("plugins", name, "run_as"), f"config: plugins.{name}.run_as is not supported; ignored"
        )
    try:
        return _build(name, given, ctx, max_workers, source_file)
    except ConfigError:
        return PluginEntry(
            name=name,
            enabled=False,
            uses=given.uses,
            config=dict(given.config or {}),
            notify_on_complete=bool(given.notify_on_complete),
            vault_principal=given.vault_principal,
            requires_vault=bool(given.requires_vault),
            schedules=list(given.schedules or []),
            source_file=source_file,
        )


def _build(
    name: str, given: PluginSchema, ctx: BuildContext, max_workers: int, source_file: str
) -> PluginEntry:
    base: KeyPath = ("plugins", name)
    label = f'plugin "{name}"'
    if given.enabled:
        if given.schedule is not None:
            raise ctx.error(f"{label}: schedule is no longer supported; use schedules[]", (*base, "schedule"))
        if given.run_as:
            raise ctx.error(
                f"{label}: run_as (privilege separation) is not supported; "
                "remove it to run the plugin as the gateway user",
                (*base, "run_as"),
            )
        _check_principal(name, given, ctx)

    if given.parallelism is not None and not 1 <= given.parallelism <= max_workers:
        raise ctx.error(
            f"{label}: parallelism {given.parallelism} must be between 1 and service.max_workers ({max_workers})",
            (*base, "parallelism"),
        )
    max_outstanding_polls = 1 if given.max_outstanding_polls is None else given.max_outstanding_polls
    if max_outstanding_polls < 1:
        raise ctx.error(f"{label}: max_outstanding_polls must be >= 1", (*base, "max_outstanding_polls"))

    return PluginEntry(
        name=name,
        enabled=bool(given.enabled),
        uses=given.uses,
        config=dict(given.config or {}),
        retry=_retry(given.retry, ctx, base, label),
        timeouts=_timeouts(given.timeouts, ctx, base),
        circuit_breaker=_breaker(given.circuit_breaker, ctx, base, label),
        parallelism=given.parallelism,
        max_outstanding_polls=max_outstanding_polls,
        notify_on_complete=bool(given.notify_on_complete),
        vault_principal=given.vault_principal,
        requires_vault=bool(given.requires_vault),
        schedules=list(given.schedules or []),
        source_file=source_file,
    )


def _check_principal(name: str, given: PluginSchema, ctx: BuildContext) -> None:
    base: KeyPath = ("plugins", name)
    principal = given.vault_principal
    if principal is not None and not PRINCIPAL_NAME.match(principal):
        raise ctx.error(
            f'plugin "{name}": vault_principal "{principal}" is not a valid principal name',
            (*base, "vault_principal"),
        )
    if principal is None and given.requires_vault and not PRINCIPAL_NAME.match(name):
        raise ctx.error(
            f'plugin "{name}": name is not a valid principal name; set plugins.{name}.vault_principal',
            (*base, "requires_vault"),
        )


def _retry(given: RetrySchema | None, ctx: BuildContext, base: KeyPath, label: str) -> RetryConfig:
    defaults = RetryConfig()
    if given is None:
        return defaults
    max_attempts = given.max_attempts or defaults.max_attempts
    if max_attempts < 1:
        raise ctx.error(f"{label}: retry.max_attempts must be >= 1", (*base, "retry", "max_attempts"))
    backoff_base = _duration_or_default(
        given.backoff_base, defaults.backoff_base, ctx, (*base, "retry", "backoff_base")
    )
    return RetryConfig(max_attempts=max_attempts, backoff_base=backoff_base)


def _breaker(given: BreakerSchema | None, ctx: BuildContext, base: KeyPath, label: str) -> BreakerConfig:
    defaults = BreakerConfig()
    if given is None:
        return defaults
    threshold = given.threshold or defaults.threshold
    if threshold < 1:
        raise ctx.error(
            f"{label}: circuit_breaker.threshold must be >= 1", (*base, "circuit_breaker", "threshold")
        )
    reset_after = _duration_or_default(
        given.reset_after, defaults.reset_after, ctx, (*base, "circuit_breaker", "reset_after")
    )
    return BreakerConfig(threshold=threshold, reset_after=reset_after)


def _timeouts(given: dict[str, Any] | None, ctx: BuildContext, base: KeyPath) -> dict[str, float]:
    overrides: dict[str, float] = {}
    for command, value in (given or {}).items():
        if value is None:
            continue
        seconds = ctx.duration(value, (*base, "timeouts", command))
        if seconds > 0:  # zero means "use the default"
            overrides[command] = seconds
    return overrides


def _duration_or_default(value: Any, default: float, ctx: BuildContext, path: KeyPath) -> float:
    if value is None:
        return default
    seconds = ctx.duration(value, path)
    return seconds if seconds > 0 else default
