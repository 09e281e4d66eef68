"""The README's quick start, run as written against a copy of examples/quickstart (STYLE.md: every
runnable example in README.md is run by a test, so docs cannot rot).

The commands, token, path and body are parsed out of README.md, so editing the README without
keeping it working fails this test. Only ``api.listen`` is moved to a free port.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.integration.daemon import REPO, Daemon, free_port

README = REPO / "README.md"
QUICKSTART = REPO / "examples" / "quickstart"
JOB_LINE = re.compile(r"^Job ([0-9a-f-]{36}) succeeded in (\d+)ms: (.*)$")


def shell_commands() -> list[tuple[str, str]]:
    """Every command of the README's ``sh`` blocks (continuations joined) with the comment after it."""
    out: list[tuple[str, str]] = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.lstrip().startswith("#"):
                following = lines[i + 1].strip() if i + 1 < len(lines) else ""
                out.append((line.strip(), following.removeprefix("#").strip() if following.startswith("#") else ""))
    return out


def command(containing: str) -> tuple[list[str], str]:
    found = [(shlex.split(line), comment) for line, comment in shell_commands() if containing in line]
    assert len(found) == 1, f"README.md should have exactly one command containing {containing!r}: {found}"
    return found[0]


def option(argv: list[str], flag: str) -> str:
    assert flag in argv, (flag, argv)
    return argv[argv.index(flag) + 1]


def ductile_argv(argv: list[str]) -> list[str]:
    """Replace the README's ``.venv/bin/ductile`` with this interpreter's ``-m ductile.cli.main``."""
    i = next(i for i, a in enumerate(argv) if a.endswith("/ductile") or a == "ductile")
    return [sys.executable, "-m", "ductile.cli.main", *argv[i + 1:]]


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[tuple[Daemon, Path, str]]:
    target = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, target, ignore=shutil.ignore_patterns("data"))  # data/ is runtime state
    config_file = target / "config.yaml"
    original = config_file.read_text()
    listen = yaml.safe_load(original)["api"]["listen"]
    port = free_port()
    rewritten, n = re.subn(rf"(?m)^(\s+listen:\s*){re.escape(listen)}\s*$", rf"\g<1>127.0.0.1:{port}", original)
    assert n == 1, "examples/quickstart/config.yaml should set api.listen once"
    config_file.write_text(rewritten)
    assert {k: v for k, v in yaml.safe_load(rewritten).items() if k != "api"} == \
        {k: v for k, v in yaml.safe_load(original).items() if k != "api"}
    curl, _ = command("curl ")
    token = option(curl, "-H").removeprefix("Authorization: Bearer ")
    gw = Daemon.for_config_dir(target, port, token)
    gw.start()
    yield gw, target, listen
    gw.close()


def test_readme_quickstart_runs_as_written(quickstart: tuple[Daemon, Path, str]) -> None:
    gw, config_dir, listen = quickstart
    assert "examples/quickstart" in (REPO / "Makefile").read_text(), "make run starts examples/quickstart"

    # 1. The curl example, as an HTTP request with the same method, path, header and body.
    curl, expected = command("curl ")
    url = next(a for a in curl if a.startswith("http"))
    assert urlsplit(url).netloc == listen, "the README's curl targets the quickstart's api.listen"
    assert option(curl, "-X") == "POST"
    header = option(curl, "-H")
    name, _, value = header.partition(": ")
    resp = httpx.post(f"{gw.url}{urlsplit(url).path}", headers={name: value}, content=option(curl, "-d").encode(),
                      timeout=10)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body == json.loads(expected.replace("…", body["job_id"])), "the README shows the 202 body"
    echo = gw.wait_job(body["job_id"])
    assert echo["status"] == "succeeded", echo

    # 2. `plugin run ... --wait` with the README's environment; the gateway URL comes from the config.
    run_line = next(line for line, _ in shell_commands() if " plugin run " in line)
    argv = shlex.split(run_line)
    env = dict(a.split("=", 1) for a in argv if re.match(r"^[A-Z_]+=", a))
    assert env.get("DUCTILE_API_KEY") == gw.client.headers["Authorization"].removeprefix("Bearer ")
    proc = subprocess.run(
        ductile_argv(argv), capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, **env, "DUCTILE_CONFIG_DIR": str(config_dir)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = JOB_LINE.match(proc.stdout.strip())
    assert m, proc.stdout
    _, run_comment = command(" plugin run ")
    assert run_comment.startswith("Job … succeeded in ")
    assert m.group(3) == run_comment.rsplit(": ", 1)[1] == "Hello, Ada!"
    greeter_job = m.group(1)

    # 3. `job inspect <job_id> --config examples/quickstart` for both jobs.
    inspect, _ = command(" job inspect ")
    assert option(inspect, "--config") == "examples/quickstart"
    for job_id in (body["job_id"], greeter_job):
        args = [job_id if a == "<job_id>" else str(config_dir) if a == "examples/quickstart" else a
                for a in ductile_argv(inspect)]
        shown = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert shown.returncode == 0, shown.stderr
        assert f"  job_id: {job_id}" in shown.stdout.splitlines()
        assert "  status: succeeded" in shown.stdout.splitlines(), shown.stdout
    assert "Hello, Ada!" in subprocess.run(
        [*ductile_argv(inspect)[:3], "job", "inspect", greeter_job, "--config", str(config_dir)],
        capture_output=True, text=True, timeout=60, cwd=REPO).stdout
