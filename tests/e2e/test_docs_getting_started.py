"""docs/getting-started.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

The page runs as ``tests/e2e/doc_pages.py`` reads it, in a scratch directory that holds a copy of
``examples/quickstart/plugins``. The one liberty: the API's ``127.0.0.1:8080`` (written by
``config init``) becomes a free port, in the config right after ``config init`` (re-locked) and in
every command.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.doc_pages import LISTEN, Reader, move_listener, shell_env
from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "getting-started.md"
PLUGINS = REPO / "examples" / "quickstart" / "plugins"
INIT = "ductile config init --config-dir ./my-gateway"


def test_docs_getting_started_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DUCTILE_AGE_KEY_FILE", "DUCTILE_CONFIG_DIR", "DUCTILE_VAULT_TOKEN", "DUCTILE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    # The vault's management socket lives under the config dir: keep its path short.
    work = Path(tempfile.mkdtemp(prefix="dg-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    shutil.copytree(PLUGINS, work / "examples" / "quickstart" / "plugins")
    gateway = work / "my-gateway"
    port = free_port()
    listen = f"127.0.0.1:{port}"
    reader = Reader(work, shell_env(tmp_path), tmp_path / "shell-env",
                    gateway=lambda: Daemon.for_config_dir(gateway, port, "not-needed-for-healthz"),
                    rewrite=lambda command: command.replace(LISTEN, listen))
    daemons = reader.run(PAGE, after=lambda step: move_listener(gateway, listen) if step.command == INIT else None)

    assert len(daemons) == 1
    log = daemons[0].log_text()
    assert '"msg":"gateway started"' in log
    # The API token went from the vault to the caller, never into the config or the log.
    token = (tmp_path / "shell-env").read_text().split("DUCTILE_API_KEY=", 1)[1].split("\n", 1)[0].strip('"')
    assert len(token) > 20 and token not in log and token not in (gateway / "config.yaml").read_text()
