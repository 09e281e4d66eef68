from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME for a CLI run, so nothing of the tester's (~/.config/ductile) is found."""
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def vault_gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A daemon (not started, no plugins) for vault tests, with a HOME of its own so that no
    ``~/.config/ductile/age.key`` and no ``$DUCTILE_AGE_KEY_FILE`` of the tester's is found."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    d = Daemon(tmp_path / "gw", plugins={})
    try:
        yield d
    finally:
        d.close()


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
