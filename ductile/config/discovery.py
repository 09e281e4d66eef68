"""Finding the config directory (spec config.md §1)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from ductile.config.errors import ConfigError
from ductile.config.paths import home_directory, resolve_path

ROOT_FILE_NAME = "config.yaml"
SYSTEM_CONFIG_DIR = Path("/etc/ductile")
NOTHING_FOUND = "no config found (checked: $DUCTILE_CONFIG_DIR, ~/.config/ductile, /etc/ductile)"


class ConfigSource(msgspec.Struct, frozen=True):
    """Where the config came from: the root file, its directory and how it was found."""

    root_file: Path
    config_dir: Path
    source: str  # "explicit" | "env:DUCTILE_CONFIG_DIR" | "auto-discovered"


def find_config(
    config: str | None = None,
    config_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    system_dir: Path = SYSTEM_CONFIG_DIR,
) -> ConfigSource:
    """Resolve ``--config`` / ``--config-dir`` / ``$DUCTILE_CONFIG_DIR`` / ``~/.config/ductile`` /
    ``/etc/ductile``, in that order."""
    env = os.environ if environ is None else environ
    home_dir = home if home is not None else home_directory(env)
    if config is not None and config_dir is not None:
        raise ConfigError("use only one of --config or --config-dir")
    if config is not None:
        return _from_path(_absolute(config, home_dir), "explicit")
    if config_dir is not None:
        directory = _absolute(config_dir, home_dir)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"--config-dir {directory} is not a directory")
        return _from_directory(directory, "explicit")
    from_env = env.get("DUCTILE_CONFIG_DIR", "")
    if from_env and _absolute(from_env, home_dir).exists():
        return _from_path(_absolute(from_env, home_dir), "env:DUCTILE_CONFIG_DIR")
    for candidate in (home_dir / ".config" / "ductile", system_dir):
        if candidate.exists():
            return _from_path(_absolute(str(candidate), home_dir), "auto-discovered")
    raise ConfigError(NOTHING_FOUND)


def _from_path(path: Path, source: str) -> ConfigSource:
    if path.is_dir():
        return _from_directory(path, source)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    return ConfigSource(root_file=path, config_dir=path.parent, source=source)


def _from_directory(directory: Path, source: str) -> ConfigSource:
    root = directory / ROOT_FILE_NAME
    if not root.is_file():
        raise ConfigError(f"{ROOT_FILE_NAME} not found in {directory}")
    return ConfigSource(root_file=root, config_dir=directory, source=source)


def _absolute(text: str, home: Path) -> Path:
    return resolve_path(text, Path.cwd(), home)
