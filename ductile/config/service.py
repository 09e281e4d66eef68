"""``service.*`` (spec config.md §4.2)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ductile.config.context import BuildContext
from ductile.config.durations import format_duration
from ductile.config.model import ServiceConfig, default_max_workers
from ductile.config.schema import ServiceSchema

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("json", "text")
DURABILITY_MODES = ("full", "normal")
KEBAB_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNSUPPORTED_ADMISSION = ("fail_on_sidedoor",)


def build_service(schema: ServiceSchema | None, ctx: BuildContext) -> ServiceConfig:
    given = schema or ServiceSchema()
    defaults = ServiceConfig(max_workers=1)

    def duration(name: str) -> float:
        value = getattr(given, name)
        return getattr(defaults, name) if value is None else ctx.duration(value, ("service", name))

    name = defaults.name if given.name is None else given.name
    if not KEBAB_NAME.match(name):
        ctx.warn(
            "service",
            ("service", "name"),
            f'service.name "{name}" should be lower-kebab-case (e.g. "my-gateway")',
        )

    tick_interval = duration("tick_interval")
    if tick_interval < 0.1:
        raise ctx.error("service.tick_interval must be at least 100ms", ("service", "tick_interval"))

    log_level = _choice(given.log_level, defaults.log_level)
    if log_level not in LOG_LEVELS:
        raise ctx.error("service.log_level must be one of debug, info, warn, error", ("service", "log_level"))
    log_format = _choice(given.log_format, defaults.log_format)
    if log_format not in LOG_FORMATS:
        raise ctx.error('service.log_format must be "json" or "text"', ("service", "log_format"))
    durability = _choice(given.durability, defaults.durability)
    if durability not in DURABILITY_MODES:
        raise ctx.error('service.durability must be "full" or "normal"', ("service", "durability"))

    max_workers = default_max_workers() if given.max_workers is None else given.max_workers
    if max_workers <= 0:
        raise ctx.error("service.max_workers must be > 0", ("service", "max_workers"))

    hook_max_depth = given.hook_max_depth or defaults.hook_max_depth
    if hook_max_depth < 0:
        raise ctx.error("service.hook_max_depth must be >= 0", ("service", "hook_max_depth"))

    dedupe_ttl = duration("dedupe_ttl")
    job_queue_retention = duration("job_queue_retention")
    if dedupe_ttl > 0 and job_queue_retention > 0 and job_queue_retention < dedupe_ttl:
        raise ctx.error(
            f"service.job_queue_retention ({format_duration(job_queue_retention)}) must be >= "
            f"service.dedupe_ttl ({format_duration(dedupe_ttl)})",
            ("service", "job_queue_retention"),
        )

    node_lease = duration("node_lease")
    if node_lease < 3:
        raise ctx.error("service.node_lease must be at least 3s", ("service", "node_lease"))
    if given.node_id is not None and not KEBAB_NAME.match(given.node_id):
        raise ctx.error('service.node_id must be lower-kebab-case (e.g. "gw-1")', ("service", "node_id"))

    passthrough = list(given.plugin_env_passthrough or [])
    for index, variable in enumerate(passthrough):
        if not ENV_VAR_NAME.match(variable):
            raise ctx.error(
                f"service.plugin_env_passthrough[{index}]: invalid environment variable name",
                ("service", "plugin_env_passthrough", index),
            )

    return ServiceConfig(
        name=name,
        tick_interval=tick_interval,
        log_level=log_level,
        log_format=log_format,
        durability=durability,
        max_workers=max_workers,
        shutdown_grace=duration("shutdown_grace"),
        hook_max_depth=hook_max_depth,
        dedupe_ttl=dedupe_ttl,
        job_queue_retention=job_queue_retention,
        job_log_retention=duration("job_log_retention"),
        job_transitions_retention=duration("job_transitions_retention"),
        job_attempts_retention=duration("job_attempts_retention"),
        breaker_transitions_retention=duration("breaker_transitions_retention"),
        allow_symlinks=bool(given.allow_symlinks),
        plugin_env_passthrough=passthrough,
        admission=_admission(given),
        strict_mode=bool(given.strict_mode),
        node_id=given.node_id,
        node_lease=node_lease,
    )


def _choice(value: str | None, default: str) -> str:
    return default if value is None else value


def _admission(given: ServiceSchema) -> dict[str, Any]:
    if given.admission is None:
        return {}
    fields = msgspec.structs.asdict(given.admission)
    return {
        key: value for key, value in fields.items() if value is not None and key not in _UNSUPPORTED_ADMISSION
    }
