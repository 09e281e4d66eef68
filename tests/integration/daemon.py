"""Start the real gateway as a subprocess on a temp config dir and drive it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.polling import wait_until as wait_until  # the one home; tests import it from here too

REPO = Path(__file__).resolve().parents[2]
TEST_PLUGINS = REPO / "tests" / "plugins"
TOKEN = "integration-test-token"
TERMINAL = {"succeeded", "failed", "timed_out", "dead", "skipped"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_ATTEMPTS = 3
PORT_TAKEN = "address already in use"  # uvicorn's bind error, in the gateway's log


class GatewayExited(AssertionError):
    """The gateway process ended while a test waited for it to serve."""


def process_alive(pid: int) -> bool:
    """Is ``pid`` a live process? A zombie counts as dead: nobody may reap orphans in a container."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Daemon:
    def __init__(self, root: Path, plugins: dict[str, Any], service: dict[str, Any] | None = None,
                 tokens: list[dict[str, Any]] | None = None, plugin_roots: list[str] | None = None) -> None:
        self._setup(root, free_port(), TOKEN)
        self._owns_config = True
        self.config: dict[str, Any] = {
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
        self.write_config()

    def _setup(self, root: Path, port: int, token: str) -> None:
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._owns_config = False  # written by someone else: its port cannot be moved
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    @classmethod
    def for_config_dir(cls, root: Path, port: int, token: str) -> Daemon:
        """A daemon on a config directory written by someone else (its ``api.listen`` must be ``port``)."""
        d = cls.__new__(cls)
        d._setup(root, port, token)
        return d

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def set_plugins(self, plugins: dict[str, Any]) -> None:
        """Rewrite config.yaml with other ``plugins`` (same port, tokens, roots); takes effect at start."""
        self.config["plugins"] = plugins
        self.write_config()

    @property
    def state_db(self) -> Path:
        return self.root / "data" / "ductile.db"

    def start(self, wait: bool = True) -> Daemon:
        """Start the gateway; with ``wait``, until ``/healthz`` answers.

        The port was free when it was picked, but another process may bind it before the gateway
        does. When the gateway reports the port taken, it is started again on a new free port
        (``port``, ``url``, ``client`` and config.yaml follow).
        """
        for _ in range(PORT_ATTEMPTS - 1):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn()
            if not wait:
                return self
            try:
                wait_until(self._healthy, 30, what=f"gateway health (log: {self.log_path})")
                return self
            except GatewayExited:
                if not (self._owns_config and PORT_TAKEN in self.log_text()[log_offset:]):
                    raise
            self._move_to_port(free_port())
        self._spawn()
        if wait:
            wait_until(self._healthy, 30, what=f"gateway health (log: {self.log_path})")
        return self

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ductile.cli.main", "system", "start", "--config", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
        )
        log.close()

    def _move_to_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.client.base_url = httpx.URL(self.url)
        self.config["api"]["listen"] = f"127.0.0.1:{port}"
        self.write_config()

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise GatewayExited(f"gateway exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
        try:
            resp = self.client.get("/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        # Another process on the port must not pass for this gateway.
        served = resp.json().get("config_path") if resp.status_code == 200 else None
        return served is not None and Path(served).resolve() == (self.root / "config.yaml").resolve()

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

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
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

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})}, cwd=self.root,
        )

    def raw_request(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> RawResponse:
        """Send bytes exactly as given (httpx refuses e.g. a header value with trailing whitespace)."""
        return raw_request(self.port, method, path, headers, body)

    def enqueue_via_log(self, plugin: str, command: str = "poll", payload: dict[str, Any] | None = None, *,
                        dedupe_key: str | None = None, dedupe_ttl: float = 0, submitted_by: str = "test",
                        max_attempts: int = 1) -> Any:
        """Enqueue from this (test) process through the same EventLog code; returns the EnqueueOutcome."""
        return enqueue_via_log(self.state_db, plugin, command, payload, dedupe_key=dedupe_key, dedupe_ttl=dedupe_ttl,
                               submitted_by=submitted_by, max_attempts=max_attempts)

    def table(self, name: str, order_by: str) -> list[tuple[Any, ...]]:
        with self.db() as db:
            return db.execute(f"SELECT * FROM {name} ORDER BY {order_by}").fetchall()


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> RawResponse:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        parsed[k.strip().lower()] = v.strip()
    if parsed.get("transfer-encoding") == "chunked":
        out, buf = b"", rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        rest = out
    return RawResponse(int(lines[0].split()[1]), parsed, rest)


def enqueue_via_log(state_db: Path, plugin: str, command: str = "poll", payload: dict[str, Any] | None = None, *,
                    dedupe_key: str | None = None, dedupe_ttl: float = 0, submitted_by: str = "test",
                    max_attempts: int = 1) -> Any:
    """Append an enqueue to the state DB the way another process would (the gateway may be running)."""
    import uuid

    from ductile.app import jobs
    from ductile.commands.jobs import EnqueueJob
    from ductile.events.log import EventLog
    from ductile.projections.registry import default_runner

    cmd = EnqueueJob(job_id=str(uuid.uuid4()), plugin=plugin, command=command, payload=payload or {},
                     submitted_by=submitted_by, max_attempts=max_attempts, dedupe_key=dedupe_key,
                     dedupe_ttl=int(dedupe_ttl * 1_000_000_000))
    log = EventLog(state_db, "full", default_runner()).open_sync()
    try:
        return log.submit_sync(lambda tx: jobs.enqueue(tx, cmd))
    finally:
        log.close()


def call(gw: Daemon, method: str, path: str, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
    """One request to ``gw`` with ``token`` as bearer (None: no Authorization header)."""
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, gw.url + path, headers=headers, timeout=15, **kw)


def error_of(resp: httpx.Response) -> str:
    """The message of a JSON error body, asserting the body is exactly ``{"error": ...}``."""
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    body = resp.json()
    assert list(body) == ["error"], body
    return body["error"]


def seed_vault(config_dir: Path, secrets: dict[str, str]) -> tuple[Path, str]:
    """A vault beside ``config_dir``'s config (``age.key`` + ``vault.age``) holding ``secrets``
    (granted to nobody, so the gateway may name them); written before the state DB exists, so the
    first boot adopts it. Returns the key file and the admin token."""
    from ductile.app.vault import init_vault
    from ductile.vault.keys import generate_identity, load_keyring, write_key_file
    from ductile.vocabulary import VaultActor

    key = config_dir / "age.key"
    write_key_file(key, generate_identity(), "test")
    keeper, admin = init_vault(config_dir / "vault.age", load_keyring(key), None)
    for name, value in secrets.items():
        keeper.set(name, value=value, actor=VaultActor.CLI)
    return key, admin


def db_file_alone_events(state_db: Path, into: Path) -> list[tuple[int, str]]:
    """Copy only the database file (never its ``-wal``/``-shm``) into ``into`` and read every
    event's (position, type) from the copy, read-only: what a plain file copy of a stopped
    gateway's state holds (operations.md §2)."""
    import shutil
    import sqlite3

    into.mkdir(parents=True, exist_ok=True)
    copy = into / state_db.name
    shutil.copyfile(state_db, copy)
    assert not (into / f"{state_db.name}-wal").exists()
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT position, type FROM events ORDER BY position").fetchall()
    finally:
        conn.close()
