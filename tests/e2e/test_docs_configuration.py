"""docs/configuration.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

Every command of the page's ``sh`` blocks runs in order, through bash, in a scratch directory that
holds a copy of ``examples/quickstart/plugins``, with ``ductile`` on PATH as this interpreter's
CLI. The ``# `` lines under a command are its output (stdout and stderr as the terminal shows
them; ``…`` matches anything); a last line ``(exit status N)`` is the command's exit status, else
it must be 0. A ``<<'EOF'`` here-document belongs to the command that opens it.
``ductile system start`` — which the page runs in another terminal — starts the real daemon in the
background. The one liberty: the API's ``127.0.0.1:8080`` (written by ``config init``, used by the
page's ``curl``) becomes a free port, in the config right after ``config init`` (re-locked) and in
every command.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ductile.app.config_lock import plan_lock, write_lock
from ductile.config.discovery import ConfigSource
from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "configuration.md"
PLUGINS = REPO / "examples" / "quickstart" / "plugins"
START = "ductile system start"
INIT = "ductile config init --config-dir ./my-gateway"
LISTEN = "127.0.0.1:8080"
EXIT = re.compile(r"\(exit status (\d+)\)")


class Step:
    def __init__(self, command: str) -> None:
        self.command = command
        self.expected: list[str] = []

    @property
    def exit_status(self) -> int:
        last = EXIT.fullmatch(self.expected[-1]) if self.expected else None
        return int(last.group(1)) if last else 0

    def matches(self, output: str) -> bool:
        expected = self.expected[:-1] if self.expected and EXIT.fullmatch(self.expected[-1]) else self.expected
        lines = output.splitlines()
        patterns = [re.escape(line).replace("…", ".*") for line in expected]
        return len(lines) == len(patterns) and all(re.fullmatch(p, line) for p, line in zip(patterns, lines, strict=True))


def steps() -> list[Step]:
    """Every command of the page's ``sh`` blocks, in order, with the ``# `` output lines under it."""
    out: list[Step] = []
    for block in re.findall(r"```sh\n(.*?)```", PAGE.read_text(), flags=re.S):
        lines = iter(block.splitlines())
        for line in lines:
            if line.startswith("#"):
                assert out, f"output before any command: {line!r}"
                out[-1].expected.append(line.removeprefix("#").removeprefix(" "))
            elif line.strip():
                step = Step(line.strip())
                if "<<'EOF'" in line:
                    body = []
                    for more in lines:
                        body.append(more)
                        if more == "EOF":
                            break
                    step.command += "\n" + "\n".join(body)
                out.append(step)
    return out


def test_the_page_parses_into_the_commands_it_shows() -> None:
    commands = [s.command for s in steps()]
    assert commands[0] == INIT and commands.count(START) == 1 and commands[-1] == "ductile system stop"
    heredocs = [c for c in commands if "<<'EOF'" in c]
    assert len(heredocs) == 2 and all(c.endswith("\nEOF") for c in heredocs)
    assert [s.exit_status for s in steps() if s.exit_status] == [1, 1, 1]  # check, two rejected reloads


def test_docs_configuration_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("DUCTILE_AGE_KEY_FILE", "DUCTILE_CONFIG_DIR", "DUCTILE_VAULT_TOKEN", "DUCTILE_API_KEY", "GREETING"):
        monkeypatch.delenv(name, raising=False)

    work = tmp_path / "work"
    shutil.copytree(PLUGINS, work / "examples" / "quickstart" / "plugins")
    shim = tmp_path / "bin" / "ductile"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m ductile.cli.main "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    shell_env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"}
    state = tmp_path / "shell-env"
    state.write_text("")

    gateway = work / "my-gateway"
    listen = f"127.0.0.1:{free_port()}"
    daemons: list[Daemon] = []
    try:
        for step in steps():
            if step.command == START:
                gw = Daemon.for_config_dir(gateway, int(listen.rsplit(":", 1)[1]), "no-token-configured")
                daemons.append(gw)
                gw.start()
                continue
            command = step.command.replace(LISTEN, listen)
            script = f"source {state}\n{command}\nrc=$?\nexport -p > {state}\nexit $rc\n"
            done = subprocess.run(["bash", "-c", script], cwd=work, env=shell_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=90)
            assert done.returncode == step.exit_status, f"{step.command}\n{done.stdout}"
            assert step.matches(done.stdout), f"{step.command}\nexpected:\n" + "\n".join(step.expected) + \
                f"\ngot:\n{done.stdout}"
            if step.command == INIT:
                move_listener(gateway, listen)
            if step.command == "ductile system stop":
                proc = daemons[-1].proc
                assert proc is not None and proc.wait(timeout=30) == 0
    finally:
        for gw in daemons:
            gw.close()

    assert len(daemons) == 1
    log = daemons[0].log_text()
    assert "config reloaded successfully" in log
    assert "config reload failed: config reload rejected: changes to api.listen require a full restart" in log
    assert (gateway / "plugins.yaml.bak").exists() and (gateway / "config.yaml.bak").exists()


def move_listener(gateway: Path, listen: str) -> None:
    """The page's one liberty: the API on a free port instead of 8080, sealed as ``config init`` sealed it."""
    root = gateway / "config.yaml"
    text = root.read_text()
    assert f"listen: {LISTEN}\n" in text
    root.write_text(text.replace(f"listen: {LISTEN}\n", f"listen: {listen}\n"))
    write_lock(plan_lock(ConfigSource(root_file=root, config_dir=gateway, source="explicit"), dict(os.environ)))
