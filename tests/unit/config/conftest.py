"""Fixtures for config tests: a config dir under tmp_path, a writer and a loader."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, MutableMapping
from pathlib import Path

import pytest

from ductile.config import Config, ConfigSource, load_config

Write = Callable[[str, str], Path]
Load = Callable[..., Config]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "conf"
    (directory / "plugins").mkdir(parents=True)
    return directory


@pytest.fixture
def write(config_dir: Path) -> Write:
    def write(name: str, text: str) -> Path:
        path = config_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def load(config_dir: Path, tmp_path: Path) -> Load:
    def load(environ: MutableMapping[str, str] | None = None) -> Config:
        source = ConfigSource(root_file=config_dir / "config.yaml", config_dir=config_dir, source="explicit")
        env = {"HOME": str(tmp_path / "home")} if environ is None else environ
        return load_config(source, environ=env)

    return load
