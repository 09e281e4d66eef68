"""Editing a config file in place (config.md §9 ``config set --apply``, §10 ``config token``).

The one home of the write rules every config edit follows: the target is the file whose own
content provides the top-level key (else the root ``config.yaml``); encrypted files are refused;
the original is copied to ``<file>.bak``; the new text is written atomically (temp file, fsync,
rename, the file's mode kept); the whole config is then loaded again and the caller's check run on
it. On any failure the original bytes are put back and ``ConfigEditFailed`` says
``validation failed: <error> (restored <file>)``.

This release re-emits the edited file through the YAML dumper: values and key order survive,
comments do not (issue 12's ``config set`` brings a comment-preserving writer here).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ductile.config.discovery import ConfigSource
from ductile.config.documents import display_name
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.config.model import Config
from ductile.config.plaintext import is_age_data

Change = Callable[[dict[str, Any]], None]
Check = Callable[[Config], None]


class ConfigEditFailed(Exception):
    """An edit that was not made (the file is as it was); the message is for the user."""


def owning_file(config: Config, top_key: str) -> Path:
    """The last loaded YAML file whose own top level holds ``top_key`` (its list entries merge
    last), else the root file."""
    owner = config.source.root_file
    for path in config.files:
        if path.suffix not in (".yaml", ".yml") or not path.exists():
            continue
        with contextlib.suppress(OSError, yaml.YAMLError, UnicodeDecodeError):
            content = path.read_bytes()
            if is_age_data(content):
                continue
            data = yaml.safe_load(content.decode("utf-8-sig"))
            if isinstance(data, dict) and top_key in data:
                owner = path
    return owner


def edit(source: ConfigSource, path: Path, change: Change, check: Check) -> Config:
    """Apply ``change`` to the mapping of ``path``, write it under the rules above, and return the
    config loaded again (on which ``check`` raised nothing)."""
    name = display_name(path, source.config_dir)
    original = path.read_bytes() if path.exists() else None
    if original is not None and is_age_data(original):
        raise ConfigEditFailed(f"{name} is encrypted; edit it with 'ductile secrets' instead")
    data = yaml.safe_load(original.decode("utf-8-sig")) if original else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigEditFailed(f"{name}: expected a mapping of keys at the top level")
    change(data)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if original is not None:
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    _write_atomic(path, text.encode())
    try:
        config = load_config(source)
        check(config)
    except (ConfigError, ConfigEditFailed) as exc:
        if original is None:
            path.unlink()
        else:
            _write_atomic(path, original)
        raise ConfigEditFailed(f"validation failed: {exc} (restored {name})") from None
    return config


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file beside ``path``, fsync, rename; the old file's mode is kept (0600 for a new one)."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
