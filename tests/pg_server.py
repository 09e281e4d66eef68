"""A throwaway PostgreSQL server for the test suite (issue 17 item 4).

One server per pytest(-xdist) worker, in its own temporary directory, started from the server
binaries the machine has (``initdb``, ``pg_ctl``). PostgreSQL refuses to run as root, and CI and the
developers' machines run the suite as root: then every server command runs as the unprivileged
``postgres`` account through ``runuser``, and the directory is handed to that account.

The server listens on a unix socket in its own directory and on 127.0.0.1 at a free port, with
trust authentication: nothing here is a secret, and nothing outlives the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
RUN_AS = "postgres"  # the image's unprivileged account, used only when the suite runs as root
SKIP_ENV = "DUCTILE_TEST_POSTGRES"  # "skip": skip the PostgreSQL tests explicitly
BIN_ENV = "DUCTILE_TEST_POSTGRES_BIN"  # a directory holding initdb and pg_ctl, searched first
DIR_PREFIX = "ductile-pg-"
OWNER_FILE = "owner.pid"  # the test process a server belongs to: a server whose owner died is an orphan
START_ATTEMPTS = 3  # a free port can be taken by another process between probing and binding

# Durability settings a test never needs: a crashed test server is thrown away, never recovered.
# They make CREATE DATABASE and every commit cheap (no fsync, no waiting for the WAL flush).
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",  # two workers per machine, five engineers per machine: stay small
    "max_connections": "200",  # the several-node tests open a pool per node
    "max_wal_size": "1GB",  # fewer checkpoints during a test run
    "log_min_messages": "warning",
    "logging_collector": "off",
}


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why and what to do."""


def find_bin_dir() -> Path | None:
    """The directory with ``initdb`` and ``pg_ctl``: $DUCTILE_TEST_POSTGRES_BIN, PATH, then the
    usual install places (the newest version under /usr/lib/postgresql first)."""
    candidates: list[str] = []
    if os.environ.get(BIN_ENV):
        candidates.append(os.environ[BIN_ENV])
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates.append("/usr/local/bin")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _version_key(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in ``root``: ``data/`` (the cluster), ``sock/`` (the unix socket),
    ``server.log``. ``start()`` then ``stop()``; ``stop()`` also removes ``root``."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.log = root / "server.log"
        self.port = 0
        self.startup_seconds = 0.0
        self._as_root = os.geteuid() == 0

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", RUN_AS, "--", *cmd] if self._as_root else cmd

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{tool} {' '.join(args)} exited {done.returncode}:\n{done.stderr.strip()}\n{tail}".rstrip()
            )

    def start(self) -> None:
        if self._as_root:
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root needs `runuser` to start PostgreSQL as another user")
            try:
                shutil.chown(self.root, user=RUN_AS)
            except LookupError as e:
                raise PostgresUnavailable(
                    f"running as root: PostgreSQL refuses root, and there is no `{RUN_AS}` user to run it as"
                ) from e
            self.root.chmod(0o700)
        # --no-sync: nothing is flushed to disk; C locale and UTF8 make every worker's cluster alike.
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--no-sync",
                  "--no-instructions", "-E", "UTF8", "--locale=C")
        self._mkdir_owned(self.sock)
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            options = {**SETTINGS, "listen_addresses": "'127.0.0.1'", "port": str(self.port),
                       "unix_socket_directories": f"'{self.sock}'"}
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                conf.writelines(f"{k} = {v}\n" for k, v in options.items())
            try:
                self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log))
                return
            except PostgresUnavailable:
                if attempt == START_ATTEMPTS - 1 or "could not bind" not in self.log.read_text():
                    raise

    def _mkdir_owned(self, path: Path) -> None:
        path.mkdir()
        if self._as_root:
            shutil.chown(path, user=RUN_AS)

    def stop(self) -> None:
        """Stop the server at once (nothing to keep) and remove its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL over TCP, the way a gateway node connects to its database."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        """The same database over the unix socket (cheaper per statement than TCP)."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.sock}&port={self.port}"

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """An empty database for one test, dropped afterwards even if the test left connections open."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.socket_url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.socket_url(), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def stop_orphans(bin_dir: Path) -> None:
    """Stop and remove the servers of test processes that died without stopping them (SIGKILL, a
    CI timeout): nothing else would, and each holds memory and a port until the machine reboots."""
    for owner in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*/{OWNER_FILE}"):
        try:
            os.kill(int(owner.read_text()), 0)
            continue  # its test process is alive (maybe another engineer's session): not ours to stop
        except ProcessLookupError:
            pass
        except (PermissionError, ValueError):
            continue  # another user's process, or a file being written: leave it
        orphan = PgServer(bin_dir, owner.parent)
        try:
            orphan.stop()
        except PostgresUnavailable as e:
            warnings.warn(f"could not stop an orphaned test server in {owner.parent}: {e}", stacklevel=1)


def start_server() -> PgServer:
    """A started server in a new temporary directory; raises PostgresUnavailable with the reason."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) in $DUCTILE_TEST_POSTGRES_BIN, PATH, /usr/local/bin or "
            "/usr/lib/postgresql/*/bin: install the server (e.g. `apt-get install postgresql`), point "
            f"{BIN_ENV} at its bin directory, or set {SKIP_ENV}=skip to skip the PostgreSQL tests"
        )
    stop_orphans(bin_dir)
    # Not pytest's tmp_path: its parents are private to root, which the `postgres` account cannot enter.
    server = PgServer(bin_dir, Path(tempfile.mkdtemp(prefix=DIR_PREFIX)))
    (server.root / OWNER_FILE).write_text(str(os.getpid()))
    started = time.perf_counter()
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.perf_counter() - started
    return server
