"""docs/secrets.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

Every command of the page's ``sh`` blocks runs in order, through bash, in a scratch directory that
holds a copy of examples/secrets (only ``api.listen`` moved to a free port), with ``ductile`` on
PATH as this interpreter's CLI. The ``# `` lines under a command are its output (stdout and stderr
as the terminal shows them; ``…`` matches anything). ``ductile system start`` — which the page runs
in another terminal — starts the real daemon in the background. The secret's value enters only
through the environment variable the page names, and is then looked for where it must never be.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "secrets.md"
EXAMPLE = REPO / "examples" / "secrets"
START = "ductile system start"
CANARY = f"CANARY-{uuid.uuid4()}"


class Step:
    def __init__(self, command: str, expected: list[str]) -> None:
        self.command = command
        self.expected = expected

    def matches(self, output: str) -> bool:
        lines = output.splitlines()
        patterns = [re.escape(line).replace("…", ".*") for line in self.expected]
        return len(lines) == len(patterns) and all(re.fullmatch(p, line) for p, line in zip(patterns, lines, strict=True))


def steps() -> list[Step]:
    """Every command of the page's ``sh`` blocks, in order, with the ``# `` output lines under it."""
    out: list[Step] = []
    for block in re.findall(r"```sh\n(.*?)```", PAGE.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("#"):
                assert out, f"output before any command: {line!r}"
                out[-1].expected.append(line.removeprefix("#").removeprefix(" "))
            elif line.strip():
                out.append(Step(line.strip(), []))
    return out


def test_the_page_only_takes_values_on_stdin() -> None:
    for step in steps():
        if " vault set " in step.command and "--pattern auto" not in step.command:
            assert step.command.startswith("printf '%s' \"$SMTP_PASSWORD\" | "), step.command
        assert "--value" not in step.command


def test_docs_secrets_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    monkeypatch.delenv("DUCTILE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("DUCTILE_VAULT_TOKEN", raising=False)
    monkeypatch.delenv("DUCTILE_API_KEY", raising=False)

    # The default management socket lives under the work dir, and pytest's own temp paths (longer
    # still under xdist) can outgrow what a unix socket path holds: work in a short one.
    work = Path(tempfile.mkdtemp(prefix="dd-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    shutil.copytree(EXAMPLE, work / "examples" / "secrets", ignore=shutil.ignore_patterns("data"))
    config_file = work / "examples" / "secrets" / "config.yaml"
    original = config_file.read_text()
    listen = yaml.safe_load(original)["api"]["listen"]
    port = free_port()
    config_file.write_text(original.replace(f"listen: {listen}\n", f"listen: 127.0.0.1:{port}\n"))
    assert {k: v for k, v in yaml.safe_load(config_file.read_text()).items() if k != "api"} == \
        {k: v for k, v in yaml.safe_load(original).items() if k != "api"}
    token = yaml.safe_load(original)["api"]["auth"]["tokens"][0]["token"]

    shim = tmp_path / "bin" / "ductile"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m ductile.cli.main "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    # The operator's shell has the value; the gateway's environment never does.
    shell_env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "SMTP_PASSWORD": CANARY}
    state = tmp_path / "shell-env"
    state.write_text("")

    gateway = work / "my-gateway"
    daemons: list[Daemon] = []
    try:
        for step in steps():
            if step.command == START:
                gw = Daemon.for_config_dir(gateway, port, token)
                daemons.append(gw)
                gw.start()
                continue
            script = f"source {state}\n{step.command}\nrc=$?\nexport -p > {state}\nexit $rc\n"
            done = subprocess.run(["bash", "-c", script], cwd=work, env=shell_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=90)
            assert done.returncode == 0, f"{step.command}\n{done.stdout}"
            assert step.matches(done.stdout), f"{step.command}\nexpected:\n" + "\n".join(step.expected) + \
                f"\ngot:\n{done.stdout}"
            if step.command == "ductile system stop":
                proc = daemons[-1].proc
                assert proc is not None and proc.wait(timeout=30) == 0
    finally:
        for gw in daemons:
            gw.close()

    assert len(daemons) == 2, "the page starts the gateway, stops it, and starts it again"
    assert CANARY.encode() not in (work / "my-gateway" / "vault.age").read_bytes()  # encrypted
    for path in (gateway / "data").iterdir():
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in daemons[0].log_text() + daemons[1].log_text()
