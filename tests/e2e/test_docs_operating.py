"""docs/operating.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

The page runs as ``tests/e2e/doc_pages.py`` reads it, in a scratch directory that holds a copy of
``examples/quickstart``. The one liberty: the API's ``127.0.0.1:8080`` becomes a free port, in the
copied config (re-locked) and in every command and its output. The troubleshooting table's messages
are checked against the code that produces them, so a reworded message cannot leave the page behind.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.doc_pages import LISTEN, Reader, move_listener, shell_env, steps
from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "operating.md"
EXAMPLE = REPO / "examples" / "quickstart"
COPY = "cp -R examples/quickstart ./my-gateway"
TOKEN = "quickstart-token-change-me"


def test_the_page_stops_before_each_offline_verb() -> None:
    commands = [s.command for s in steps(PAGE)]
    assert commands[0] == COPY and commands[-1] == "ductile system stop"
    restore = next(i for i, c in enumerate(commands) if c.startswith("ductile system restore"))
    assert "ductile system stop" in commands[:restore]
    assert [s.exit_status for s in steps(PAGE) if s.exit_status] == [2, 1, 1, 1]  # watch, backup, selfcheck, start


def test_docs_operating_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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

    assert len(daemons) == 2, "the page starts the gateway, stops it, restores, and starts it again"
    assert (work / "my-gateway.lost").is_dir() and (gateway / "data" / "ductile.db").is_file()
    log = (work / "gateway.log").read_text()
    assert log.count('"msg":"gateway started"') == 2  # the refused second one logged to /dev/null


def troubleshooting_messages() -> list[str]:
    table = PAGE.read_text().split("## 6. Troubleshooting", 1)[1]
    return re.findall(r"^\| `([^`]+)`", table, flags=re.M)


def test_every_troubleshooting_message_is_one_the_code_produces() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "ductile").rglob("*.py"))
    messages = troubleshooting_messages()
    assert len(messages) == 9
    for message in messages:
        # The fixed words between the placeholders (<path>, N, …) appear in the code as written.
        for fragment in re.split(r"<[a-z]+>|\bN\b|…", message):
            fragment = fragment.strip(" ():")
            if len(fragment) >= 8:
                assert fragment in source, f"{message!r}: {fragment!r} is not produced by ductile/"
