"""`ductile config init` (config.md §1, cli.md §2.3): scaffold a config directory that boots as it
is, then lock it. The templates ship inside the package (``ductile/templates``), so an installed
wheel can do it."""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path

import msgspec

from ductile.app.config_lock import ConfigLockError, plan_lock, write_lock
from ductile.config.discovery import ROOT_FILE_NAME, ConfigSource
from ductile.config.errors import ConfigError

PLUGINS_DIR = "plugins"
WEBHOOKS_FILE = "webhooks.yaml"
CHECKSUMS_FILE = ".checksums"
EXISTS = "{path} already exists (use --force to overwrite)"
BACKUP_SUFFIX = ".bak"


class ConfigInitError(Exception):
    """The directory was not scaffolded (exit 1); the message is for the user."""


class InitOutcome(msgspec.Struct, frozen=True):
    config_dir: Path
    written: list[Path]  # files and directories created, in order


def root_template(config_dir: Path) -> str:
    """The scaffold's ``config.yaml``: its plugin root is ``<D>/plugins`` (config.md §1), written
    as a JSON string, which YAML reads as the same string whatever the path holds."""
    template = resources.files("ductile.templates").joinpath(ROOT_FILE_NAME).read_text()
    return template.format(plugin_root=json.dumps(str(config_dir / PLUGINS_DIR)))


def init_config_dir(config_dir: Path, *, force: bool) -> InitOutcome:
    """Write ``config.yaml``, ``plugins/`` and ``webhooks.yaml`` into ``config_dir`` (0700), then
    ``.checksums``. With ``force``, each file replaced is copied to ``<file>.bak`` first."""
    root = config_dir / ROOT_FILE_NAME
    if root.exists() and not force:
        raise ConfigInitError(EXISTS.format(path=root))
    webhooks = resources.files("ductile.templates").joinpath(WEBHOOKS_FILE).read_bytes()
    written: list[Path] = []
    try:
        if not config_dir.is_dir():
            config_dir.mkdir(parents=True, mode=0o700)
            config_dir.chmod(0o700)  # whatever the umask
        _write(root, root_template(config_dir).encode())
        written.append(root)
        plugins = config_dir / PLUGINS_DIR
        if not plugins.is_dir():
            plugins.mkdir(mode=0o700)
            written.append(plugins)
        _write(config_dir / WEBHOOKS_FILE, webhooks)
        written.append(config_dir / WEBHOOKS_FILE)
        _backup(config_dir / CHECKSUMS_FILE)
    except OSError as exc:
        raise ConfigInitError(f"{config_dir}: cannot write: {exc.strerror or exc}") from None
    source = ConfigSource(root_file=root, config_dir=config_dir, source="explicit")
    try:
        written.append(write_lock(plan_lock(source, dict(os.environ))))
    except (ConfigError, ConfigLockError) as exc:
        raise ConfigInitError(str(exc)) from None
    return InitOutcome(config_dir=config_dir, written=written)


def _write(path: Path, content: bytes) -> None:
    _backup(path)
    path.write_bytes(content)
    path.chmod(0o600)


def _backup(path: Path) -> None:
    """A file ``init`` is about to replace is kept as ``<file>.bak`` (config.md §1, ``--force``)."""
    if path.is_file():
        shutil.copy2(path, path.with_name(path.name + BACKUP_SUFFIX))
