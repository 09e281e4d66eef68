"""``.env`` files named by ``environment_vars.include`` (spec config.md §3.2)."""

from __future__ import annotations

from collections.abc import MutableMapping

from ductile.config.errors import ConfigError

_QUOTES = ('"', "'")


def parse_env_text(text: str, file: str) -> dict[str, str]:
    """``KEY=VALUE`` lines: blanks and ``#`` comments skipped, optional ``export``, one pair of
    matching quotes stripped. Within one file a later line wins."""
    values: dict[str, str] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, separator, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not separator or not key:
            raise ConfigError(f"invalid env line {number} in {file}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES:
            value = value[1:-1]
        values[key] = value
    return values


def add_missing(environ: MutableMapping[str, str], values: dict[str, str]) -> None:
    """A variable already in the environment is never overwritten."""
    for key, value in values.items():
        environ.setdefault(key, value)
