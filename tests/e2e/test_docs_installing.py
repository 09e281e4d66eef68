"""docs/installing.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

The page's ``sh`` blocks run as ``tests/e2e/doc_pages.py`` reads them, in a fresh ``git clone`` of
this checkout whose ``.venv`` is this test's venv (what ``make test`` would have made), with
``pipx`` putting ``ductile`` in a bin directory of the test's own. The liberties: this machine's
pip configuration is left out (a fresh machine has none) while its download cache is kept. The
clone section's two commands are what README.md says and what ``.ci/run`` runs; the test checks
that both install from the lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.doc_pages import Reader, steps
from tests.integration.daemon import REPO, Daemon
from tests.lockfile import normalise, pins

PAGE = REPO / "docs" / "installing.md"
pytestmark = pytest.mark.package


def clone_block(text: str) -> list[str]:
    block = text.split("## 1. From a clone", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.splitlines()]


def test_the_clone_commands_are_the_readmes_and_install_the_lock() -> None:
    assert clone_block(PAGE.read_text()) == ["make run", "make test"]
    readme = (REPO / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in readme.splitlines()] == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
    dry = subprocess.run(["make", "-n", "-B", "-C", str(REPO), ".venv/.installed"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    installs = [line for line in dry.splitlines() if " pip install " in line]
    assert len(installs) == 2, dry
    assert "--require-hashes -r requirements.lock" in installs[0]
    assert "--no-deps --no-build-isolation -e ." in installs[1]


def no_gateway(root: Path) -> Daemon:
    raise AssertionError("the page starts its gateway in the background, not through the runner")


def test_docs_installing_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("pipx", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("pipx is not installed (it is in the test extra)")
    work = tmp_path / "ductile"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(work)], check=True, timeout=60)
    (work / ".venv").symlink_to(sys.prefix)
    bin_dir = tmp_path / "bin"
    tools = tmp_path / "tools"  # pipx alone, so the venv's own `ductile` is not on PATH
    tools.mkdir()
    (tools / "pipx").symlink_to(Path(sys.executable).parent / "pipx")
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "DUCTILE_CONFIG_DIR", "DUCTILE_COMMIT", "DUCTILE_API_KEY"}}
    env |= {
        "HOME": str(tmp_path), "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(bin_dir),
        "PIPX_MAN_DIR": str(tmp_path / "man"), "PIP_CONFIG_FILE": os.devnull,
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "PATH": f"{bin_dir}:{tools}:{os.environ['PATH']}",
    }
    reader = Reader(work, env, tmp_path / "shell-env", gateway=lambda: no_gateway(work))
    try:
        reader.run(PAGE)
    finally:  # a step that failed may have left the page's gateway running
        if (bin_dir / "ductile").exists():
            subprocess.run([str(bin_dir / "ductile"), "system", "stop", "--config", str(work / "my-gateway")],
                           env=env, capture_output=True, timeout=90, check=False)

    installed = subprocess.run(["pipx", "runpip", "ductile", "freeze"], env=env, capture_output=True, text=True,
                               timeout=60, check=True).stdout
    lock = pins(work / "requirements-runtime.lock")
    venv = {normalise(name): version for name, version in re.findall(r"^([\w.\-]+)==(\S+)$", installed, flags=re.M)}
    assert re.search(r"^ductile @ file://\S+/ductile-0\.1\.0-py3-none-any\.whl", installed, flags=re.M), installed
    assert venv == lock, "pipx's venv is not exactly the runtime lock"
    log = (work / "gateway.log").read_text()
    assert log.count('"msg":"gateway started"') == 2 and log.count('"msg":"gateway stopped"') == 2
    assert (tmp_path / ".local" / "share" / "bash-completion" / "completions" / "ductile").is_file()
    assert len(steps(PAGE)) >= 15
