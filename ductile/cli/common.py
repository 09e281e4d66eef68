"""Shared CLI plumbing: config resolution and opening the state DB read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ductile.cli.output import CliFailure


def resolve(config: str | None, config_dir: str | None):  # -> Config
    """Load the config (discovery order of config.md §1); failures are ``config error: ...``."""
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError
    from ductile.config.loader import load_config

    try:
        return load_config(find_config(config, config_dir))
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None


def find_source(config: str | None, config_dir: str | None):  # -> ConfigSource
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError

    try:
        return find_config(config, config_dir)
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None


def open_readonly(state_path: Path) -> sqlite3.Connection:
    """The state DB read-only: works while the gateway runs, never modifies anything."""
    from ductile.events.log import connect

    if not state_path.exists():
        raise CliFailure(f"state database {state_path} does not exist (has the gateway ever started?)")
    try:
        conn = connect(state_path, readonly=True)
        conn.execute("SELECT 1 FROM job_queue LIMIT 1")
    except sqlite3.Error as exc:
        raise CliFailure(f"cannot read state database {state_path}: {exc}") from None
    return conn
