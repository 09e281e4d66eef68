"""What ``config show|get`` print (config.md §9): the merged config with the defaults of §4 filled
in and redacted, and each plugin's effective runtime settings with where each came from.

Defaults are read from the loaded ``Config`` (the values the gateway really uses), never restated
here; durations print in the duration grammar (``5m``), as an operator writes them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from ductile.config.durations import format_duration
from ductile.config.loader import DEFAULT_STATE_PATH
from ductile.config.locations import KeyPath, dotted
from ductile.config.model import DEFAULT_TIMEOUTS, Config, PluginEntry
from ductile.config.redaction import display_document, redact
from ductile.config.schema import AdmissionSchema, ApiSchema, Duration, ServiceSchema

# Keys of a section that are not plain settings: shown only as written.
_NOT_DEFAULTED = frozenset({"admission", "unconfined", "auth"})


class Source(StrEnum):
    EXPLICIT = "explicit"
    DEFAULT = "default"


class EffectiveValue(msgspec.Struct, frozen=True, omit_defaults=True):
    value: Any
    source: Source
    file: str | None = None

    def human(self) -> str:
        return f"{_scalar_text(self.value)} ({self.source})"


def resolved_document(config: Config) -> dict[str, Any]:
    """The merged config as ``config show`` prints it: environment values masked, the defaults of
    ``service``, ``api``, ``state`` and ``secrets`` filled in, secrets redacted."""
    document = display_document(config)
    service = _section(document, "service")
    for name, kind in _fields(ServiceSchema):
        if name not in service and name not in _NOT_DEFAULTED:
            service[name] = _shown(getattr(config.service, name), kind)
    admission = service.setdefault("admission", {}) if isinstance(service.get("admission", {}), dict) else {}
    for name, _ in _fields(AdmissionSchema):
        if name != "fail_on_sidedoor":
            admission.setdefault(name, False)  # every gate defaults to off (§7)
    api = _section(document, "api")
    for name, kind in _fields(ApiSchema):
        if name not in api and name not in _NOT_DEFAULTED:
            value = getattr(config.api, name)
            api[name] = str(value) if name == "management_socket" and value is not None else _shown(value, kind)
    auth = api.setdefault("auth", {})
    if isinstance(auth, dict):
        auth.setdefault("tokens", [])  # §4.3: no tokens by default
    document.setdefault("plugins", {})  # §4.1
    if "database" not in document and config.state_url is None:
        _section(document, "state").setdefault("path", DEFAULT_STATE_PATH)
    secrets = _section(document, "secrets")
    if "vault_file" not in secrets and config.secrets.vault_file is not None:
        secrets["vault_file"] = str(config.secrets.vault_file)
    return redact(document)


def effective_plugin(config: Config, entry: PluginEntry, *, concurrency_safe: bool = True) -> dict[str, EffectiveValue]:
    """``enabled``, ``retry.*``, ``timeouts.*``, ``circuit_breaker.*``, ``max_outstanding_polls``
    and ``parallelism`` of one plugin, each tagged explicit (with its file) or default.
    ``concurrency_safe``: the discovered manifest's flag (a default parallelism of 1 when false)."""
    raw = (config.raw.get("plugins") or {}).get(entry.name) or {}
    parallelism = entry.parallelism_for(config.service.max_workers, concurrency_safe)
    values: dict[str, Any] = {
        "enabled": entry.enabled,
        "retry.max_attempts": entry.retry.max_attempts,
        "retry.backoff_base": format_duration(entry.retry.backoff_base),
        **{f"timeouts.{c}": format_duration(entry.timeout_for(c)) for c in [*DEFAULT_TIMEOUTS,
                                                                             *sorted(set(entry.timeouts) - set(DEFAULT_TIMEOUTS))]},
        "circuit_breaker.threshold": entry.circuit_breaker.threshold,
        "circuit_breaker.reset_after": format_duration(entry.circuit_breaker.reset_after),
        "max_outstanding_polls": entry.max_outstanding_polls,
        "parallelism": parallelism,
    }
    result: dict[str, EffectiveValue] = {}
    for field, value in values.items():
        path: KeyPath = tuple(field.split("."))
        if _has(raw, path):
            result[field] = EffectiveValue(value, Source.EXPLICIT, file_of(config, ("plugins", entry.name, *path)))
        else:
            result[field] = EffectiveValue(value, Source.DEFAULT)
    return result


def file_of(config: Config, path: KeyPath) -> str | None:
    """The file (display name) that provided the value at ``path`` or its nearest ancestor."""
    location = config.location(dotted(path))
    if location is None:
        return None
    name, _, line = location.rpartition(":")
    return name if name and line.isdigit() else location


def _has(value: Any, path: KeyPath) -> bool:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _section(document: dict[str, Any], key: str) -> dict[str, Any]:
    section = document.get(key)
    if not isinstance(section, dict):
        section = {}
        document[key] = section
    return section


def _fields(schema: type[msgspec.Struct]) -> list[tuple[str, Any]]:
    return [(f.name, f.type) for f in msgspec.structs.fields(schema)]


def _shown(value: Any, kind: Any) -> Any:
    """A default as an operator would write it: a duration field in the duration grammar."""
    if kind == Duration | None and isinstance(value, int | float) and not isinstance(value, bool):
        return format_duration(value)
    return msgspec.to_builtins(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
