"""Redaction of config values for display and snapshots: no secret ever leaves in clear."""

from __future__ import annotations

import re
from typing import Any

_SENSITIVE = re.compile(r"secret|key|token|password|api_key|credential|auth|passwd", re.IGNORECASE)
REDACTED = "[REDACTED]"


def redact(value: Any, key: str | None = None) -> Any:
    """Replace scalars whose nearest key looks sensitive; ``*_ref`` keys name secrets and stay."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key is not None and not key.endswith("_ref") and _SENSITIVE.search(key) and value is not None:
        return REDACTED
    return value
