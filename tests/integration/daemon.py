"""Start the real gateway as a subprocess on a temp config dir and drive it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
TEST_PLUGINS = REPO / "tests" / "plugins"
TOKEN = "integration-test-token"
TERMINAL = {"succeeded", "failed", "timed_out", "dead", "skipped"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Daemon:
    def __init__(self, root: Path, plugins: dict[str, Any], service: dict[str, Any] | None = None,
                 tokens: list[dict[str, Any]] | None = None, plugin_roots: list[str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        config = {
            "service": {"max_workers": 4, "shutdown_grace": "5s", "log_level": "debug", **(service or {})},
            "state": {"path": "data/ductile.db"},
            "plugin_roots": plugin_roots or [str(TEST_PLUGINS)],
            "api": {
                "enabled": True,
                "listen": f"127.0.0.1:{self.port}",
                "auth": {"tokens": tokens or [{"token": TOKEN, "scopes": ["*"]}]},
            },
            "plugins": plugins,
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    @property
    def state_db(self) -> Path:
        return self.root / "data" / "ductile.db"

    def start(self, wait: bool = True) -> Daemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ductile.cli.main", "system", "start", "--config", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
        )
        log.close()
        if wait:
            wait_until(self._healthy, 30, what=f"gateway health (log: {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def trigger(self, plugin: str, command: str = "poll", payload: dict[str, Any] | None = None) -> str:
        resp = self.client.post(f"/plugin/{plugin}/{command}", json={"payload": payload or {}})
        assert resp.status_code == 202, resp.text
        return resp.json()["job_id"]

    def job(self, job_id: str) -> dict[str, Any]:
        resp = self.client.get(f"/job/{job_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_job(self, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 30.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        return wait_until(done, timeout, what=f"job {job_id} to reach {statuses}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.client.close()

    def db(self):  # type: ignore[no-untyped-def]
        import sqlite3

        return sqlite3.connect(f"file:{self.state_db}?mode=ro", uri=True)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True, timeout=60,
            env={**os.environ, **(env or {})}, cwd=self.root,
        )
