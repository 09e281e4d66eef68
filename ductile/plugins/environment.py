"""The environment a plugin process sees (plugins.md §4).

Only allowlisted names and the operator's passthrough names reach a plugin, and only when they are
set in the gateway's own environment. Ductile adds nothing: secrets travel in the request, never here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

BASE_ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH",
    "HOME",
    "TZ",
    "LANG",
    "LANGUAGE",
    "TMPDIR",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_COLLATE",
    "LC_MONETARY",
    "LC_MESSAGES",
    "LC_PAPER",
    "LC_NAME",
    "LC_ADDRESS",
    "LC_TELEPHONE",
    "LC_MEASUREMENT",
    "LC_IDENTIFICATION",
)

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def passthrough_errors(names: Sequence[str]) -> list[str]:
    """Config errors for `service.plugin_env_passthrough` entries that are not variable names."""
    return [
        f"service.plugin_env_passthrough[{i}]: invalid environment variable name"
        for i, name in enumerate(names)
        if not _VARIABLE_NAME.fullmatch(name)
    ]


def plugin_environment(environ: Mapping[str, str], passthrough: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in (*BASE_ENV_ALLOWLIST, *passthrough):
        # An invalid name is a config error reported elsewhere; here it must simply never pass.
        if name in environ and _VARIABLE_NAME.fullmatch(name):
            env[name] = environ[name]
    return env
