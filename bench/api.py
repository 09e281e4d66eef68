"""API enqueue throughput: ``POST /plugin/p/c`` against a hello-world Litestar route.

Both servers run as separate processes under uvicorn on loopback; the same in-process load
generator (raw keep-alive HTTP/1.1 over asyncio streams, so the client is not the bottleneck)
drives each with the same concurrency. The gateway runs durable (``synchronous=FULL``) with
its dispatcher draining the queue meanwhile.
Last line: ``RESULT bench=api value=<req/s> baseline=<hello req/s> ratio=<v/b> p99_ms=<p99>
cpu_ratio=<hello CPU/request over the gateway's>``. Both servers use uvicorn's httptools parser.

``--floor`` also serves ``bench/api_floor.py`` (the gateway's HTTP stack, guard, access log and body
checks around a write that a thread resolves at once, no SQL) in the same run, and prints its line
first: ``RESULT bench=api_floor value=<req/s> baseline=<hello req/s> ratio=<v/b> p99_ms=<p99>
cpu_ratio=<hello CPU/request over the floor's>``. Every server's CPU per request is also split
between its event loop (the main thread) and its other threads (the writer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
HELLO = """
from litestar import Litestar, post
@post("/plugin/{plugin:str}/{command:str}", status_code=202)
async def hello(plugin: str, command: str) -> dict:
    return {"job_id": "00000000-0000-0000-0000-000000000000", "status": "queued", "plugin": plugin, "command": command}
app = Litestar([hello], logging_config=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


async def load(port: int, path: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    body = b'{"payload":{"mode":"sleep","seconds":120}}'
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if status != 202:
                raise RuntimeError(f"unexpected status {status}: {head!r}")
            latencies.append(time.perf_counter() - started)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started), latencies


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU so far of every thread of ``pid``, or of its thread ``tid`` (Linux ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """One server's measured load: throughput, p99 latency and CPU per request (in all, and of the
    event loop's thread, which is the process's main thread)."""

    def __init__(self, pid: int, port: int, path: str, requests: int, concurrency: int) -> None:
        asyncio.run(load(port, path, 500, concurrency))  # warm-up
        cpu, loop_cpu = cpu_seconds(pid), cpu_seconds(pid, pid)
        self.rate, latencies = asyncio.run(load(port, path, requests, concurrency))
        self.cpu_ms = (cpu_seconds(pid) - cpu) / requests * 1000
        self.loop_ms = (cpu_seconds(pid, pid) - loop_cpu) / requests * 1000
        self.p99 = p99_ms(latencies)

    def cpu(self) -> str:
        return f"{self.cpu_ms:.3f} ms CPU/request (loop {self.loop_ms:.3f}, other threads {self.cpu_ms - self.loop_ms:.3f})"


def p99_ms(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def serve(cmd: list[str], port: int, requests: int, concurrency: int, sigterms: int = 1, **popen: Any) -> Run:
    """Start a server, measure it once it listens, then stop it (``sigterms`` SIGTERMs)."""
    proc = subprocess.Popen(cmd, **popen)
    try:
        wait_port(port)
        return Run(proc.pid, port, "/plugin/behave/poll", requests, concurrency)
    finally:
        for _ in range(sigterms):
            proc.send_signal(signal.SIGTERM)
        proc.wait()


def run_hello(requests: int, concurrency: int) -> Run:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "hello_app.py").write_text(HELLO)
        return serve([sys.executable, "-m", "uvicorn", "hello_app:app", "--port", str(port), "--log-level", "warning",
                      "--http", "httptools", "--no-access-log"], port, requests, concurrency, cwd=tmp)


def run_floor(requests: int, concurrency: int) -> Run:
    port = free_port()
    return serve([sys.executable, str(REPO / "bench" / "api_floor.py"), "--port", str(port)], port, requests,
                 concurrency, env={**os.environ, "PYTHONPATH": str(REPO)})


def run_gateway(requests: int, concurrency: int) -> Run:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(yaml.safe_dump({
            "service": {"max_workers": 1, "log_level": "error", "durability": "full"},
            "state": {"path": "data/ductile.db"},
            "plugin_roots": [str(REPO / "tests" / "plugins")],
            "api": {"enabled": True, "listen": f"127.0.0.1:{port}", "auth": {"tokens": [{"token": TOKEN, "scopes": ["*"]}]}},
            # One slow job holds the only slot, so the bench measures the API and the durable
            # enqueue rather than plugin spawning (bench/jobs.py measures that).
            "plugins": {"behave": {"enabled": True}},
        }))
        # A second SIGTERM skips the grace for the sleeping job.
        return serve([sys.executable, "-m", "ductile.cli.main", "system", "start", "--config", tmp], port, requests,
                     concurrency, sigterms=2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--floor", action="store_true", help="also measure bench/api_floor.py (no-SQL write)")
    args = parser.parse_args()
    base = run_hello(args.requests, args.concurrency)
    print(f"baseline: hello-world Litestar route: {base.rate:.0f} req/s, p99 {base.p99:.1f} ms, {base.cpu()}")
    floor = run_floor(args.requests, args.concurrency) if args.floor else None
    if floor is not None:
        print(f"floor: the gateway's stack, guard, access log and body checks, no-op write: {floor.rate:.0f} req/s, "
              f"p99 {floor.p99:.1f} ms, {floor.cpu()}")
    gw = run_gateway(args.requests, args.concurrency)
    print(f"gateway: POST /plugin/behave/poll (durable enqueue): {gw.rate:.0f} req/s, p99 {gw.p99:.1f} ms, {gw.cpu()}")
    if floor is not None:
        print(f"RESULT bench=api_floor value={floor.rate:.1f} baseline={base.rate:.1f} ratio={floor.rate / base.rate:.3f} "
              f"p99_ms={floor.p99:.1f} cpu_ratio={base.cpu_ms / floor.cpu_ms:.3f}")
    # cpu_ratio (hello's CPU per request over the gateway's) is the same ratio counted in work
    # rather than wall time: it holds on a machine others are loading, where req/s does not.
    print(f"RESULT bench=api value={gw.rate:.1f} baseline={base.rate:.1f} ratio={gw.rate / base.rate:.3f} "
          f"p99_ms={gw.p99:.1f} cpu_ratio={base.cpu_ms / gw.cpu_ms:.3f}")

if __name__ == "__main__":
    main()
