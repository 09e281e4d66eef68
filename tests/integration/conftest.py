from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``gateway(plugins={...}, service={...})`` starts a real daemon; all are stopped after."""
    started: list[Daemon] = []

    def make(plugins: dict[str, Any], start: bool = True, **kw: Any) -> Daemon:
        d = Daemon(tmp_path / f"gw{len(started)}", plugins, **kw)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.close()
