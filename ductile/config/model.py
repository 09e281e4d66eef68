"""The loaded configuration: defaults applied, values validated, durations in seconds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from ductile.config.discovery import ConfigSource
from ductile.config.locations import KeyPath
from ductile.events.store import EventStore, StoreUrl, open_store

# The defaults of config.md §4 that code outside the config model also needs (a fallback for a
# plugin missing from the catalog, a decider's default argument). They live here only; every
# other module imports them, so a default is never written twice.
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_BASE = 30.0  # seconds
DEFAULT_BREAKER_THRESHOLD = 3
DEFAULT_BREAKER_RESET_AFTER = 1800.0  # seconds
DEFAULT_HOOK_MAX_DEPTH = 4
DEFAULT_API_LISTEN = "127.0.0.1:8080"

DEFAULT_TIMEOUTS: dict[str, float] = {"poll": 60.0, "handle": 120.0, "health": 10.0, "init": 30.0}
FALLBACK_TIMEOUT = 60.0


def default_max_workers() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


class RetryConfig(msgspec.Struct, frozen=True):
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE


class BreakerConfig(msgspec.Struct, frozen=True):
    threshold: int = DEFAULT_BREAKER_THRESHOLD
    reset_after: float = DEFAULT_BREAKER_RESET_AFTER


class PluginEntry(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    enabled: bool = False
    uses: str | None = None
    config: dict[str, Any] = {}
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    timeouts: dict[str, float] = {}  # only explicit overrides; see timeout_for
    circuit_breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    parallelism: int | None = None  # None: max_workers, or 1 for a concurrency_safe: false manifest
    max_outstanding_polls: int = 1
    notify_on_complete: bool = False
    vault_principal: str | None = None  # None: the entry name
    requires_vault: bool = False
    schedules: list[dict[str, Any]] = []  # raw; the scheduler validates them
    source_file: str = ""  # the file whose entry won the merge

    def parallelism_for(self, max_workers: int, concurrency_safe: bool) -> int:
        """The explicit value, else ``max_workers``, or 1 for a ``concurrency_safe: false``
        manifest (§4.4): what the dispatcher runs with and what ``--effective`` shows."""
        if self.parallelism is not None:
            return self.parallelism
        return max_workers if concurrency_safe else 1

    def timeout_for(self, command: str) -> float:
        """The explicit override, else the command's default, else the ``poll`` default (60s)."""
        if command in self.timeouts:
            return self.timeouts[command]
        return DEFAULT_TIMEOUTS.get(command, FALLBACK_TIMEOUT)


class TokenEntry(msgspec.Struct, frozen=True):
    scopes: list[str]
    token: str | None = None
    secret_ref: str | None = None


class ApiConfig(msgspec.Struct, frozen=True):
    enabled: bool = False
    listen: str = DEFAULT_API_LISTEN
    host: str = "127.0.0.1"
    port: int = 8080
    max_concurrent_sync: int = 10
    max_sync_timeout: float = 300.0
    allowed_origins: list[str] = []
    tokens: list[TokenEntry] = []
    management_socket: Path | None = None  # the loader fills in <dir(state.path)>/vault-admin.sock


class ServiceConfig(msgspec.Struct, frozen=True):
    name: str = "ductile"
    tick_interval: float = 60.0
    log_level: str = "info"
    log_format: str = "json"
    durability: str = "full"
    max_workers: int = msgspec.field(default_factory=default_max_workers)
    shutdown_grace: float = 30.0
    hook_max_depth: int = DEFAULT_HOOK_MAX_DEPTH
    dedupe_ttl: float = 86400.0
    job_queue_retention: float = 86400.0
    job_log_retention: float = 2592000.0
    job_transitions_retention: float = 2592000.0
    job_attempts_retention: float = 2592000.0
    breaker_transitions_retention: float = 7776000.0
    allow_symlinks: bool = False
    plugin_env_passthrough: list[str] = []
    admission: dict[str, Any] = {}  # as written in the root config.yaml (empty = no block)
    strict_mode: bool = False
    # Several nodes on one PostgreSQL store (docs/postgresql.md): this node's id (None: generated
    # once and kept in <dir(state.path)>/node-id) and how long its lease lasts unrenewed before
    # another node re-queues its running jobs. Unused on SQLite.
    node_id: str | None = None
    node_lease: float = 30.0


class SecretsConfig(msgspec.Struct, frozen=True):
    age_key_file: Path | None = None  # None: the resolution order of vault.md §1
    vault_file: Path | None = None  # the loader fills in <configDir>/vault.age


DEFAULT_WEBHOOK_MAX_BODY = 1024 * 1024  # webhooks.md §1: 1MB, binary
DEFAULT_WEBHOOK_TOLERANCE = 300.0  # seconds (5m)


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One ``webhooks.endpoints[]`` entry, validated (webhooks.md §1). ``secret_ref`` names the
    vault secret whose value is the HMAC key; the value itself is never held here."""

    name: str
    path: str
    plugin: str
    secret_ref: str
    signature_header: str
    max_body_size: int = DEFAULT_WEBHOOK_MAX_BODY
    event_type: str | None = None
    timestamp_header: str | None = None
    timestamp_tolerance: float = DEFAULT_WEBHOOK_TOLERANCE  # seconds; used only with timestamp_header


class WebhooksConfig(msgspec.Struct, frozen=True):
    """``webhooks.*``: the listener's address and every endpoint, including those whose plugin is
    disabled (``served`` leaves those out: they answer 404)."""

    listen: str | None = None
    endpoints: list[WebhookEndpoint] = []
    disabled_plugins: frozenset[str] = frozenset()

    @property
    def served(self) -> list[WebhookEndpoint]:
        return [e for e in self.endpoints if e.plugin not in self.disabled_plugins]


class Diagnostic(msgspec.Struct, frozen=True, omit_defaults=True):
    level: str  # "error" | "warning"
    category: str
    field: str
    message: str
    file: str | None = None
    line: int | None = None


class Config(msgspec.Struct, frozen=True):
    source: ConfigSource
    service: ServiceConfig
    state_path: Path  # the SQLite file; with ``state_url``, only the anchor of the local files beside it
    plugin_roots: list[Path]
    api: ApiConfig
    plugins: dict[str, PluginEntry]
    pipelines: list[dict[str, Any]]
    webhooks: WebhooksConfig
    raw: dict[str, Any]  # the merged, interpolated mapping
    files: list[Path]  # every file the loader read (root, includes, env files), in order
    warnings: list[Diagnostic]
    env_files: list[Path] = []  # the environment_vars.include files among ``files``
    secrets: SecretsConfig = msgspec.field(default_factory=SecretsConfig)
    locations: dict[str, str] = {}  # dot path ("pipelines[2].steps") -> "file:line" of the winning value
    # Key path in ``raw`` -> the text as written, for each value that took an environment variable:
    # such values are shown and logged as their template or not at all (config.md §9).
    interpolated: dict[KeyPath, str] = {}
    state_url: StoreUrl | None = None  # ``state.url``: the log on PostgreSQL; holds a password, never print it

    def store(self) -> EventStore:
        """Where the event log lives: ``state.url`` (PostgreSQL) or ``state.path`` (SQLite)."""
        return open_store(self.state_url if self.state_url is not None else self.state_path)

    def relay_instance_names(self) -> set[str]:
        """The names under ``instances:``: the peers a ``relay:`` step may name (pipelines.md §10)."""
        return {i["name"] for i in self.raw.get("instances") or [] if isinstance(i, dict) and isinstance(i.get("name"), str)}

    def location(self, path: str) -> str | None:
        """``"file:line"`` of the value at ``path`` or of its nearest ancestor, if known."""
        candidate = path
        while candidate:
            if candidate in self.locations:
                return self.locations[candidate]
            cut = max(candidate.rfind("."), candidate.rfind("["))
            candidate = candidate[:cut] if cut > 0 else ""
        return None
