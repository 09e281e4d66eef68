"""docs/configuration.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

The page runs as ``tests/e2e/doc_pages.py`` reads it, in a scratch directory that holds a copy of
``examples/quickstart/plugins``. The one liberty: the API's ``127.0.0.1:8080`` (written by ``config init``, used by the
page's ``curl``) becomes a free port, in the config right after ``config init`` (re-locked) and in
every command.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.doc_pages import LISTEN, START, Reader, move_listener, shell_env, steps
from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "configuration.md"
PLUGINS = REPO / "examples" / "quickstart" / "plugins"
INIT = "ductile config init --config-dir ./my-gateway"


def test_the_page_parses_into_the_commands_it_shows() -> None:
    commands = [s.command for s in steps(PAGE)]
    assert commands[0] == INIT and sum(bool(START.fullmatch(c)) for c in commands) == 1 and commands[-1] == "ductile system stop"
    heredocs = [c for c in commands if "<<'EOF'" in c]
    assert len(heredocs) == 2 and all(c.endswith("\nEOF") for c in heredocs)
    assert [s.exit_status for s in steps(PAGE) if s.exit_status] == [1, 1, 1]  # check, two rejected reloads


def test_docs_configuration_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("DUCTILE_AGE_KEY_FILE", "DUCTILE_CONFIG_DIR", "DUCTILE_VAULT_TOKEN", "DUCTILE_API_KEY", "GREETING"):
        monkeypatch.delenv(name, raising=False)

    work = tmp_path / "work"
    shutil.copytree(PLUGINS, work / "examples" / "quickstart" / "plugins")
    gateway = work / "my-gateway"
    listen = f"127.0.0.1:{free_port()}"
    port = int(listen.rsplit(":", 1)[1])
    reader = Reader(work, shell_env(tmp_path), tmp_path / "shell-env",
                    gateway=lambda: Daemon.for_config_dir(gateway, port, "no-token-configured"),
                    rewrite=lambda command: command.replace(LISTEN, listen))
    daemons = reader.run(PAGE, after=lambda step: move_listener(gateway, listen) if step.command == INIT else None)

    assert len(daemons) == 1
    log = daemons[0].log_text()
    assert "config reloaded successfully" in log
    assert "config reload failed: config reload rejected: changes to api.listen require a full restart" in log
    assert (gateway / "plugins.yaml.bak").exists() and (gateway / "config.yaml.bak").exists()

