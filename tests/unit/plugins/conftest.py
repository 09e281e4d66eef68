"""Real plugin trees on disk: a manifest, an entrypoint with explicit modes, nothing mocked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

MANIFEST = """\
manifest_spec: ductile.plugin
manifest_version: 1
name: {name}
version: 1.0.0
protocol: {protocol}
entrypoint: {entrypoint}
commands:
  - name: poll
    type: read
  - name: handle
"""

WritePlugin = Callable[..., Path]


@pytest.fixture
def write_plugin() -> WritePlugin:
    def write(
        directory: Path,
        name: str,
        *,
        entrypoint: str = "run.sh",
        protocol: int = 2,
        manifest: str | None = None,
        entrypoint_mode: int = 0o755,
        create_entrypoint: bool = True,
    ) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # independent of the test runner's umask
        text = manifest if manifest is not None else MANIFEST
        (directory / "manifest.yaml").write_text(
            text.format(name=name, entrypoint=entrypoint, protocol=protocol)
        )
        if create_entrypoint and ".." not in entrypoint and not entrypoint.startswith("/"):
            script = directory / entrypoint
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text('#!/bin/sh\necho \'{"status":"ok","result":"done"}\'\n')
            script.chmod(entrypoint_mode)
        return directory

    return write
