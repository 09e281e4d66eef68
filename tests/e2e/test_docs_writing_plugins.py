"""docs/writing-plugins.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

The page runs as ``tests/e2e/doc_pages.py`` reads it, in a scratch directory that holds a copy of
``examples/quickstart``. The page's own commands write both plugins' files, so the code a reader
copies is the code that ran. The one liberty: the API's ``127.0.0.1:8080`` becomes a free port, in
the copied config and in every command and its output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.doc_pages import LISTEN, Reader, move_listener, shell_env, steps
from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "writing-plugins.md"
EXAMPLE = REPO / "examples" / "quickstart"
COPY = "cp -R examples/quickstart ./my-gateway"
TOKEN = "quickstart-token-change-me"


def test_the_page_writes_every_plugin_file_it_shows() -> None:
    written = [s.command.split("\n", 1)[0] for s in steps(PAGE) if "<<'EOF'" in s.command]
    assert written == [
        "cat > my-gateway/plugins/disk/manifest.yaml <<'EOF'", "cat > my-gateway/plugins/disk/run.sh <<'EOF'",
        "cat > my-gateway/plugins/hello/manifest.yaml <<'EOF'", "cat > my-gateway/plugins/hello/run.py <<'EOF'",
        "cat > my-gateway/my-plugins.yaml <<'EOF'"]
    # No other code block: everything a reader copies is run.
    assert "```python" not in PAGE.read_text() and "```yaml" not in PAGE.read_text()


def test_docs_writing_plugins_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DUCTILE_AGE_KEY_FILE", "DUCTILE_CONFIG_DIR", "DUCTILE_VAULT_TOKEN", "DUCTILE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work / "examples" / "quickstart", ignore=shutil.ignore_patterns("data"))
    gateway = work / "my-gateway"
    port = free_port()
    listen = f"127.0.0.1:{port}"
    reader = Reader(work, shell_env(tmp_path), tmp_path / "shell-env",
                    gateway=lambda: Daemon.for_config_dir(gateway, port, TOKEN),
                    rewrite=lambda text: text.replace(LISTEN, listen))
    daemons = reader.run(PAGE, after=lambda step: move_listener(gateway, listen) if step.command == COPY else None)

    assert len(daemons) == 1
    greeted = [line for line in daemons[0].log_lines() if line.get("msg") == "plugin log" and line.get("plugin") == "hello"]
    assert {"greeted Ada", "greeted Grace", "greeted Lin"} <= {line.get("message") for line in greeted}
