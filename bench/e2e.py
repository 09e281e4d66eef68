"""End to end: HTTP clients enqueue jobs against a real gateway, its workers run them all.

A real ``ductile system start`` (durable, ``max_workers: 4``, the cat-like shell plugin) takes
1,000 ``POST /plugin/catlike/poll`` from 8 keep-alive HTTP clients; the clock runs from the
first request until the state DB (read-only, WAL) shows every job succeeded. The baseline,
measured in the same run, is a bare spawn of the same plugin at concurrency 4 with a thread
pool and ``subprocess.run`` (as in ``bench/jobs.py``). The gateway logs at ``BENCH_LOG_LEVEL``
(default ``info``, the gateway's own default) to /dev/null. ``--floor`` first serves
``bench/e2e_floor.py`` (the same HTTP stack and the real dispatcher around a no-op writer) to
the same clients: ``RESULT bench=e2e_floor …``.
Last line: ``RESULT bench=e2e value=<jobs/s> baseline=<bare spawns/s> ratio=<value/baseline>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from api import free_port, wait_port
from jobs import PLUGIN, WORKERS, baseline

TOKEN = "bench-token"
CLIENTS = 8
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "info")
DURABILITY = os.environ.get("BENCH_DURABILITY", "full")


async def enqueue(port: int, total: int) -> None:
    body = b'{"payload":{}}'
    request = (
        f"POST /plugin/catlike/poll HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    remaining = total

    async def client() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while remaining > 0:
            remaining -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            if int(head.split(b" ", 2)[1]) != 202:
                raise RuntimeError(f"enqueue refused: {head!r}")
        writer.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


def succeeded(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM job_queue WHERE status='succeeded'").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def server_cpu(pid: int) -> tuple[float, float]:
    """(own, children's) user + system CPU seconds so far of the server ``pid`` (Linux ``/proc``):
    the children's is every plugin process it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


class Served:
    """One server's run: jobs/s, and its CPU per job (own and its plugin processes')."""

    def __init__(self, n: int, elapsed: float, before: tuple[float, float], after: tuple[float, float]) -> None:
        self.rate = n / elapsed
        self.own_ms = (after[0] - before[0]) / n * 1e3
        self.children_ms = (after[1] - before[1]) / n * 1e3
        self.cpu_ms = self.own_ms + self.children_ms

    def cpu(self) -> str:
        return f"cpu per job {self.cpu_ms:.3f} ms: own {self.own_ms:.3f} ms, children {self.children_ms:.3f} ms"


def write_config(root: Path, port: int) -> None:
    (root / "config.yaml").write_text(yaml.safe_dump({
        "service": {"max_workers": WORKERS, "log_level": LOG_LEVEL, "durability": DURABILITY},
        "state": {"path": "data/ductile.db"},
        "plugin_roots": [str(PLUGIN.parent)],
        "api": {"enabled": True, "listen": f"127.0.0.1:{port}", "auth": {"tokens": [{"token": TOKEN, "scopes": ["*"]}]}},
        "plugins": {"catlike": {"enabled": True}},
    }))


def floor(n: int) -> Served:
    """bench/e2e_floor.py: the same HTTP stack and dispatcher around a no-op writer; done when it says so."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        write_config(Path(tmp), port)
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent / "e2e_floor.py"), "--port", str(port), "--jobs", str(n),
             "--config", tmp], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(PLUGIN.parents[2])},
        )
        try:
            wait_port(port)
            before = server_cpu(proc.pid)
            started = time.perf_counter()
            asyncio.run(enqueue(port, n))
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"done":
                raise RuntimeError(f"the floor exited with {proc.wait()}")
            elapsed = time.perf_counter() - started
            after = server_cpu(proc.pid)
        finally:
            proc.wait()
    return Served(n, elapsed, before, after)


def gateway(n: int) -> Served:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_config(root, port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ductile.cli.main", "system", "start", "--config", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
        )
        try:
            wait_port(port)
            db = root / "data" / "ductile.db"
            before = server_cpu(proc.pid)
            started = time.perf_counter()
            asyncio.run(enqueue(port, n))
            while succeeded(db) < n:
                if proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited with {proc.returncode}")
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            after = server_cpu(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    return Served(n, elapsed, before, after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--floor", action="store_true", help="also the floor: bench/e2e_floor.py, a no-op writer")
    args = parser.parse_args()
    bare = baseline(args.jobs)
    base = bare.rate
    print(bare.report())
    # cpu_ratio: the bare spawn's CPU per job (its own and its children's) over the server's, the
    # same ratio counted in work: it holds on a machine others are loading, where jobs/s does not.
    if args.floor:
        low = floor(args.jobs)
        print(f"floor: the same HTTP stack and dispatcher, no-op writer: {low.rate:.1f} jobs/s; {low.cpu()}")
        print(f"RESULT bench=e2e_floor value={low.rate:.1f} baseline={base:.1f} ratio={low.rate / base:.3f} "
              f"cpu_ratio={bare.cpu_per_job_ms / low.cpu_ms:.3f}")
    gw = gateway(args.jobs)
    print(f"gateway: {CLIENTS} HTTP clients, {args.jobs} jobs, max_workers={WORKERS}, log_level={LOG_LEVEL}, "
          f"durability={DURABILITY}: {gw.rate:.1f} jobs/s; {gw.cpu()}")
    print(f"RESULT bench=e2e value={gw.rate:.1f} baseline={base:.1f} ratio={gw.rate / base:.3f} "
          f"cpu_ratio={bare.cpu_per_job_ms / gw.cpu_ms:.3f}")


if __name__ == "__main__":
    main()
