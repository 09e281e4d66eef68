"""Redaction of config values for display and snapshots: no secret ever leaves in clear."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ductile.config.locations import KeyPath
from ductile.events.store import mask_password

if TYPE_CHECKING:
    from ductile.config.model import Config

_SENSITIVE = re.compile(r"secret|key|token|password|api_key|credential|auth|passwd", re.IGNORECASE)
REDACTED = "[REDACTED]"


def redact(value: Any, key: str | None = None) -> Any:
    """Replace scalars whose nearest key looks sensitive; ``*_ref`` keys name secrets and stay.
    A URL's password (``state.url: postgresql://user:pw@host/db``) is masked under any key."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key is not None and not key.endswith("_ref") and _SENSITIVE.search(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return mask_password(value)
    return value


def snapshot_document(config: Config) -> dict[str, Any]:
    """What the log keeps of a config (the ``ConfigSnapshotted`` body): the merged config with
    every value that came from the environment as written (``${VAR}``, never its value), redacted.

    The log is kept forever and copied into backups, so an environment value under a key that
    does not look secret (``endpoint:``, a ``dsn:`` with a password) must not reach it.
    """
    return redact(written_document(config))


def written_document(config: Config) -> dict[str, Any]:
    """The merged config as written: each value that took an environment variable as its template
    (``${VAR}``), not redacted. What an edit compares against: it writes templates, not values."""
    return _replace_at(config.raw, config.interpolated)


def display_document(config: Config) -> dict[str, Any]:
    """The merged config for display (``/config/view``): environment values masked. Key-based
    redaction (``redact``) still applies to what the display builds from it."""
    return _replace_at(config.raw, dict.fromkeys(config.interpolated, REDACTED))


def _replace_at(value: Any, replacements: Mapping[KeyPath, Any], path: KeyPath = ()) -> Any:
    if path in replacements:
        return replacements[path]
    if isinstance(value, dict):
        return {k: _replace_at(v, replacements, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_at(v, replacements, (*path, i)) for i, v in enumerate(value)]
    return value
