"""``webhooks.*`` (spec webhooks.md §1): the key table's rules and their load errors.

Every endpoint problem reads ``webhook endpoint "<name>": <detail>``; ``webhooks.listen`` missing is
reported once. Duplicate paths are ``duplicates.py``'s (checked on the merged lists, with both
files). Whether a ``secret_ref`` names a gateway-visible vault secret needs the vault, so it is
checked where the vault is loaded (``secret_refs.resolve``, the daemon's boot and reload).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ductile.config.api import parse_listen
from ductile.config.context import BuildContext
from ductile.config.durations import parse_byte_size
from ductile.config.errors import ConfigError
from ductile.config.locations import KeyPath
from ductile.config.model import (
    DEFAULT_WEBHOOK_MAX_BODY,
    DEFAULT_WEBHOOK_TOLERANCE,
    PluginEntry,
    WebhookEndpoint,
    WebhooksConfig,
)
from ductile.config.secret_refs import resolve as resolve_secret_ref
from ductile.formats.durations import DurationError, parse_duration_seconds
from ductile.vault.document import VaultDocument

RESERVED_PATH = "/healthz"  # the listener's own health route
RESERVED_EVENT_PREFIX = "ductile."
LISTEN_REQUIRED = "webhooks.listen is required when webhook endpoints are configured"
DISABLED_WARNING = 'webhook endpoint "{name}": plugin "{plugin}" is disabled; the endpoint is not served (404)'


def label(name: str) -> str:
    """How every message names an endpoint (also the ``secret_ref`` resolution's label)."""
    return f'webhook endpoint "{name}"'


class SecretFindings(msgspec.Struct, frozen=True):
    """What checking the endpoints' ``secret_ref``s found: load errors and warnings (names only)."""

    errors: list[ConfigError]
    warnings: list[str]


def check_secret_refs(config: WebhooksConfig, document: VaultDocument | None, *, vault_unreadable: bool = False
                      ) -> SecretFindings:
    """§1: each endpoint's ``secret_ref`` names a gateway-visible vault secret (``document``; None: no
    vault), else ``webhook endpoint "<n>": secret_ref "<s>" not found in vault`` fails the load.
    ``vault_unreadable``: the vault exists but no age key is available, so nothing can be resolved
    and each such finding is only a warning (``config check`` without the key)."""
    errors: list[ConfigError] = []
    warnings: list[str] = []
    for endpoint in config.endpoints:
        try:
            warnings.extend(resolve_secret_ref(document, endpoint.secret_ref, label(endpoint.name)).warnings)
        except ConfigError as error:
            if vault_unreadable:
                warnings.append(error.message)
            else:
                errors.append(error)
    return SecretFindings(errors=errors, warnings=warnings)


def check_webhooks(
    raw: Any, ctx: BuildContext, plugins: dict[str, PluginEntry]
) -> tuple[WebhooksConfig, list[ConfigError]]:
    """Every load error of the section (each with its file:line), and the endpoints that passed."""
    section = raw if isinstance(raw, dict) else {}
    given = section.get("endpoints")
    items = given if isinstance(given, list) else []
    errors: list[ConfigError] = []
    endpoints: list[WebhookEndpoint] = []
    disabled: set[str] = set()
    for index, item in enumerate(items):
        path: KeyPath = ("webhooks", "endpoints", index)
        entry = item if isinstance(item, dict) else {}
        endpoint = _endpoint(entry, path, index, ctx, plugins, errors)
        if endpoint is None:
            continue
        endpoints.append(endpoint)
        plugin = plugins.get(endpoint.plugin)
        if plugin is not None and not plugin.enabled:
            disabled.add(endpoint.plugin)
            ctx.warn("webhooks", (*path, "plugin"), DISABLED_WARNING.format(name=endpoint.name, plugin=endpoint.plugin))

    listen = section.get("listen")
    listen = listen.strip() if isinstance(listen, str) and listen.strip() else None
    if listen is None and items:
        errors.append(ctx.error(LISTEN_REQUIRED, ("webhooks",)))
    elif listen is not None:
        try:
            parse_listen(listen, ctx, ("webhooks", "listen"))
        except ConfigError as error:
            errors.append(error)
    return WebhooksConfig(listen=listen, endpoints=endpoints, disabled_plugins=frozenset(disabled)), errors


def _endpoint(
    entry: dict[str, Any], path: KeyPath, index: int, ctx: BuildContext, plugins: dict[str, PluginEntry],
    errors: list[ConfigError],
) -> WebhookEndpoint | None:
    url = _text(entry.get("path"))
    name = _text(entry.get("name")) or url or f"webhooks.endpoints[{index}]"
    found = len(errors)

    def fail(detail: str, key: str | None = None) -> None:
        errors.append(ctx.error(f"{label(name)}: {detail}", (*path, key) if key else path))

    if url is None:
        fail("path is required")
    elif not url.startswith("/"):
        fail('path must start with "/"', "path")
    elif url == RESERVED_PATH:
        fail(f'path "{RESERVED_PATH}" is reserved', "path")

    plugin = _text(entry.get("plugin"))
    if plugin is None:
        fail("plugin is required")
    elif plugin not in plugins:
        fail(f'plugin "{plugin}" is not configured', "plugin")

    secret_ref = _text(entry.get("secret_ref"))
    if secret_ref is None:
        fail("secret_ref is required")
    header = _text(entry.get("signature_header"))
    if header is None:
        fail("signature_header is required")

    max_body = DEFAULT_WEBHOOK_MAX_BODY
    if entry.get("max_body_size") is not None:
        given = entry["max_body_size"]
        try:
            max_body = parse_byte_size(given, "max_body_size")
        except ConfigError:
            max_body = 0
        if max_body <= 0:
            fail(f'invalid max_body_size "{given}"', "max_body_size")

    event_type = entry.get("event_type")
    if event_type is not None:
        if not isinstance(event_type, str) or not event_type.strip():
            fail("event_type must not be empty", "event_type")
        elif event_type.startswith(RESERVED_EVENT_PREFIX):
            fail("event_type must not use the reserved ductile. namespace", "event_type")

    timestamp_header = _text(entry.get("timestamp_header"))
    tolerance = DEFAULT_WEBHOOK_TOLERANCE
    if entry.get("timestamp_tolerance") is not None:
        given = entry["timestamp_tolerance"]
        try:
            tolerance = parse_duration_seconds(given)
        except DurationError:
            tolerance = 0.0
        if tolerance <= 0:
            fail(f'invalid timestamp_tolerance "{given}"', "timestamp_tolerance")
        elif timestamp_header is None:
            fail("timestamp_tolerance requires timestamp_header", "timestamp_tolerance")

    if len(errors) > found:
        return None
    assert url is not None and plugin is not None and secret_ref is not None and header is not None
    return WebhookEndpoint(
        name=name, path=url, plugin=plugin, secret_ref=secret_ref, signature_header=header, max_body_size=max_body,
        event_type=event_type, timestamp_header=timestamp_header, timestamp_tolerance=tolerance,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
