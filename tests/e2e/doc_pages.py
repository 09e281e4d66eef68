"""The one runner of the operator pages under ``docs/`` (STYLE.md: every runnable example is run).

A page's ``sh`` blocks are read as a reader would type them: each non-comment line is a command
(a ``\\`` line continuation joins the next line; a ``<<'EOF'`` here-document belongs to the command
that opens it), and the ``# `` lines under a command are its output, stdout and stderr as the
terminal shows them, where ``…`` matches anything. A last output line ``(exit status N)`` is the
command's exit status; otherwise it must be 0.

Each command runs through bash in the page's scratch directory, with the shell's exported variables
carried from one command to the next and ``ductile`` on PATH as this interpreter's CLI. A command
the page runs "in another terminal" (``ductile system start``, optionally ``>> LOG``) starts the real
daemon in the background instead, and ``ductile system stop`` must end it with exit status 0.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ductile.app.config_lock import plan_lock, write_lock
from ductile.config.discovery import ConfigSource
from tests.integration.daemon import Daemon

EXIT = re.compile(r"\(exit status (\d+)\)")
START = re.compile(r"ductile system start(?: >> (\S+))?")
STOP = "ductile system stop"
LISTEN = "127.0.0.1:8080"  # what `config init` and examples/quickstart listen on


class Step:
    def __init__(self, command: str) -> None:
        self.command = command
        self.expected: list[str] = []

    @property
    def exit_status(self) -> int:
        last = EXIT.fullmatch(self.expected[-1]) if self.expected else None
        return int(last.group(1)) if last else 0

    @property
    def output(self) -> list[str]:
        """The expected output lines, without the exit status line."""
        return self.expected[:-1] if self.expected and EXIT.fullmatch(self.expected[-1]) else self.expected

    def matches(self, output: str, rewrite: Callable[[str], str] = lambda line: line) -> bool:
        lines = output.splitlines()
        patterns = [re.escape(rewrite(line)).replace("…", ".*") for line in self.output]
        return len(lines) == len(patterns) and all(re.fullmatch(p, line) for p, line in zip(patterns, lines, strict=True))


def steps(page: Path) -> list[Step]:
    """Every command of the page's ``sh`` blocks, in order, with the ``# `` output lines under it."""
    out: list[Step] = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), flags=re.S):
        lines = iter(block.replace("\\\n", " ").splitlines())
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


def shell_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The reader's shell: this interpreter's ``ductile`` first on PATH, plus ``variables``."""
    shim = tmp_path / "bin" / "ductile"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m ductile.cli.main "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", **variables}


class Reader:
    """Runs a page's steps in order in ``work``, as its reader would."""

    def __init__(self, work: Path, env: dict[str, str], state: Path,
                 gateway: Callable[[], Daemon], rewrite: Callable[[str], str] = lambda c: c) -> None:
        self.work = work
        self.env = env
        self.state = state  # the exported variables, carried from one command to the next
        self.state.write_text("")
        self.gateway = gateway  # the daemon a "ductile system start" step starts
        self.rewrite = rewrite  # the test's one liberty (a free port), in each command and its output
        self.daemons: list[Daemon] = []

    def run(self, page: Path, after: Callable[[Step], None] = lambda step: None) -> list[Daemon]:
        """Every step of ``page``; ``after`` runs after each command. Every daemon is stopped at the end."""
        try:
            for step in steps(page):
                if start := START.fullmatch(step.command):
                    gw = self.gateway()
                    if start.group(1):
                        gw.log_path = self.work / start.group(1)
                    self.daemons.append(gw)
                    gw.start()
                    continue
                self.check(step)
                if step.command == STOP:
                    proc = self.daemons[-1].proc
                    assert proc is not None and proc.wait(timeout=30) == 0
                after(step)
        finally:
            for gw in self.daemons:
                gw.close()
        return self.daemons

    def check(self, step: Step) -> None:
        script = f"source {self.state}\n{self.rewrite(step.command)}\nrc=$?\nexport -p > {self.state}\nexit $rc\n"
        done = subprocess.run(["bash", "-c", script], cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=90)
        assert done.returncode == step.exit_status, f"{step.command}\n{done.stdout}"
        assert step.matches(done.stdout, self.rewrite), f"{step.command}\nexpected:\n" + "\n".join(step.output) + \
            f"\ngot:\n{done.stdout}"


def move_listener(gateway: Path, listen: str) -> None:
    """A page's one liberty: the API on a free port instead of 8080, sealed as ``config init`` sealed it."""
    root = gateway / "config.yaml"
    text = root.read_text()
    assert f"listen: {LISTEN}\n" in text
    root.write_text(text.replace(f"listen: {LISTEN}\n", f"listen: {listen}\n"))
    write_lock(plan_lock(ConfigSource(root_file=root, config_dir=gateway, source="explicit"), dict(os.environ)))
