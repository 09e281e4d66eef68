"""The wheel installs anywhere (issue 20): built by ``python -m build``, installed into a clean venv
outside the checkout with the runtime lock for its dependencies, it runs the gateway from a config
that ``ductile config init`` writes, so every template the CLI needs ships inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.integration.daemon import REPO, wait_until
from tests.lockfile import RUNTIME_LOCK

pytestmark = pytest.mark.package


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_runs_the_gateway_from_a_clean_venv(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(REPO)
    # The checkout's code must not leak in: no PYTHONPATH, a home of its own.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "DUCTILE_CONFIG_DIR", "DUCTILE_COMMIT"}}
    env["HOME"] = str(tmp_path)
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))  # the new HOME has no cache

    # An sdist, then the wheel built from it, as a packager's `python -m build` does; the backend is the
    # locked one already in this venv, so the build needs no index.
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)], tmp_path, env)
    wheel = next(dist.glob("ductile-*.whl"))
    assert next(dist.glob("ductile-*.tar.gz"))

    target = tmp_path / "venv"
    venv.create(target, with_pip=True, system_site_packages=False)
    python = target / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--require-hashes", "-r", str(RUNTIME_LOCK)], tmp_path, env, timeout=300)
    run([*pip, "--no-deps", str(wheel)], tmp_path, env)
    ductile = str(target / "bin" / "ductile")

    where = run([str(python), "-c", "import ductile; print(ductile.__file__)"], tmp_path, env).stdout.strip()
    assert Path(where).is_relative_to(target), where

    version = run([ductile, "version"], tmp_path, env).stdout.splitlines()
    assert version[0] == "ductile 0.1.0"
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    if head.returncode == 0:  # built from a git checkout (a worktree too): the wheel carries its commit
        assert version[1] == f"commit: {head.stdout.strip()}"
    assert "system" in run([ductile, "--help"], tmp_path, env).stdout

    gateway = tmp_path / "my-gateway"
    run([ductile, "config", "init", "--config-dir", str(gateway)], tmp_path, env)
    with (tmp_path / "gateway.log").open("wb") as log:
        proc = subprocess.Popen([ductile, "system", "start", "--config", str(gateway)], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        # config init's gateway keeps its API off until a token exists: its log says when it is up.
        def started() -> bool:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            return '"msg":"gateway started"' in (tmp_path / "gateway.log").read_text()

        wait_until(started, timeout=30, what="the installed gateway to start")
        stopped = run([ductile, "system", "stop", "--config", str(gateway)], tmp_path, env)
        assert stopped.stdout.startswith("gateway stopped (pid ")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert '"msg":"gateway stopped"' in (tmp_path / "gateway.log").read_text()
