"""`ductile config init` (cli.md §2.3): scaffold a config directory that boots as it is, then lock
it. The template ships inside the package (``ductile/templates``), so an installed wheel can do it."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import msgspec

from ductile.app.config_lock import ConfigLockError, plan_lock, write_lock
from ductile.config.discovery import ROOT_FILE_NAME, ConfigSource
from ductile.config.errors import ConfigError

PLUGINS_DIR = "plugins"
EXISTS = "{path} already exists (use --force to overwrite it)"


class ConfigInitError(Exception):
    """The directory was not scaffolded (exit 1); the message is for the user."""


class InitOutcome(msgspec.Struct, frozen=True):
    config_dir: Path
    written: list[Path]  # files and directories created, in order


def init_config_dir(config_dir: Path, *, force: bool) -> InitOutcome:
    """Write ``config.yaml`` and an empty plugin root into ``config_dir``, then ``.checksums``."""
    root = config_dir / ROOT_FILE_NAME
    if root.exists() and not force:
        raise ConfigInitError(EXISTS.format(path=root))
    written: list[Path] = []
    try:
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        template = resources.files("ductile.templates").joinpath(ROOT_FILE_NAME).read_bytes()
        root.write_bytes(template)
        root.chmod(0o600)
        written.append(root)
        plugins = config_dir / PLUGINS_DIR
        if not plugins.is_dir():
            plugins.mkdir(mode=0o700)
            written.append(plugins)
    except OSError as exc:
        raise ConfigInitError(f"{config_dir}: cannot write: {exc.strerror or exc}") from None
    source = ConfigSource(root_file=root, config_dir=config_dir, source="explicit")
    try:
        written.append(write_lock(plan_lock(source, dict(os.environ))))
    except (ConfigError, ConfigLockError) as exc:
        raise ConfigInitError(str(exc)) from None
    return InitOutcome(config_dir=config_dir, written=written)
