"""The shape of one config file: every known key and its YAML type.

Every field is optional (``None`` = not set in this file) so that "unset" and "zero" stay
distinguishable; defaults are applied when the merged result is built (service.py, api.py,
plugins.py). The same types drive the strict per-file check in shapes.py.
"""

from __future__ import annotations

from typing import Any

import msgspec

Duration = str | int | float  # validated by durations.parse_duration, which explains bare numbers


class _Section(msgspec.Struct, kw_only=True):
    pass


class EnvironmentVarsSchema(_Section):
    include: list[str] | None = None


class AdmissionSchema(_Section):
    verify_integrity_on_boot: bool | None = None
    fail_on_drift: bool | None = None
    validate_config_on_boot: bool | None = None
    require_api_auth: bool | None = None
    fail_on_sidedoor: Any = None  # out of scope: warned as not supported


class ServiceSchema(_Section):
    name: str | None = None
    tick_interval: Duration | None = None
    log_level: str | None = None
    log_format: str | None = None
    durability: str | None = None
    max_workers: int | None = None
    shutdown_grace: Duration | None = None
    hook_max_depth: int | None = None
    dedupe_ttl: Duration | None = None
    job_queue_retention: Duration | None = None
    job_log_retention: Duration | None = None
    job_transitions_retention: Duration | None = None
    job_attempts_retention: Duration | None = None
    breaker_transitions_retention: Duration | None = None
    allow_symlinks: bool | None = None
    plugin_env_passthrough: list[str] | None = None
    admission: AdmissionSchema | None = None
    strict_mode: bool | None = None
    node_id: str | None = None
    node_lease: Duration | None = None
    unconfined: Any = None  # out of scope: warned as not supported


class PathSchema(_Section):
    path: str | None = None


class StateSchema(_Section):
    path: str | None = None
    url: str | None = None  # postgresql://… (docs/postgresql.md); exactly one of path and url


class SecretsSchema(_Section):
    age_key_file: str | None = None
    vault_file: str | None = None


class TokenSchema(_Section):
    token: str | None = None
    secret_ref: str | None = None
    scopes: list[str] | None = None


class AuthSchema(_Section):
    tokens: list[TokenSchema] | None = None


class ApiSchema(_Section):
    enabled: bool | None = None
    listen: str | None = None
    management_socket: str | None = None
    max_concurrent_sync: int | None = None
    max_sync_timeout: Duration | None = None
    allowed_origins: list[str] | None = None
    auth: AuthSchema | None = None


class RetrySchema(_Section):
    max_attempts: int | None = None
    backoff_base: Duration | None = None


class BreakerSchema(_Section):
    threshold: int | None = None
    reset_after: Duration | None = None


class PluginSchema(_Section):
    enabled: bool | None = None
    uses: str | None = None
    config: dict[str, Any] | None = None
    schedules: list[dict[str, Any]] | None = None
    schedule: Any = None  # removed; an error on an enabled plugin
    retry: RetrySchema | None = None
    timeouts: dict[str, Duration | None] | None = None
    circuit_breaker: BreakerSchema | None = None
    parallelism: int | None = None
    max_outstanding_polls: int | None = None
    notify_on_complete: bool | None = None
    vault_principal: str | None = None
    requires_vault: bool | None = None
    run_as: Any = None  # privilege separation is out of scope


class RootSchema(_Section):
    include: list[str] | None = None
    environment_vars: EnvironmentVarsSchema | None = None
    service: ServiceSchema | None = None
    state: StateSchema | None = None
    database: PathSchema | None = None
    secrets: SecretsSchema | None = None
    plugin_roots: list[str] | None = None
    api: ApiSchema | None = None
    plugins: dict[str, PluginSchema | None] | None = None
    # Owned by their own specs; kept raw here.
    webhooks: dict[str, Any] | None = None
    pipelines: list[Any] | None = None
    instances: list[Any] | None = None
    remote_ingress: dict[str, Any] | None = None
    tokens: Any = None  # legacy tokens.yaml content; recognised, not used
    # Out of scope: warned as not supported.
    accounts: Any = None
    tcc_paths: Any = None
    routes: Any = None


UNSUPPORTED_KEYS: frozenset[tuple[str, ...]] = frozenset(
    {
        ("accounts",),
        ("tcc_paths",),
        ("routes",),
        ("service", "unconfined"),
        ("service", "admission", "fail_on_sidedoor"),
    }
)
