"""Job engine throughput: claim + spawn + complete of a cat-like shell plugin.

Enqueues N jobs (default 2,000) into a fresh durable state DB, then runs the real dispatcher
with ``max_workers: 4`` until every job has succeeded. The baseline, measured in the same run,
is a bare spawn of the same plugin at concurrency 4 with a thread pool and ``subprocess.run``.
It also prints the engine's CPU per job, per thread (from ``/proc/self/task``: the writer thread,
the slots, the rest) and the commits per job: steadier figures than the wall-clock ratio.
Last line: ``RESULT bench=jobs value=<jobs/s> baseline=<bare spawns/s> ratio=<value/baseline>``.
``--store postgres`` keeps the log on PostgreSQL (a throwaway server from ``tests/pg_server.py``,
or ``--url``): one node, the same dispatcher, the same baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from ductile.app import jobs
from ductile.commands.jobs import EnqueueJob
from ductile.config.discovery import find_config
from ductile.config.loader import load_config
from ductile.events.log import EventLog
from ductile.projections.registry import default_runner
from ductile.runtime.catalog import load_catalog
from ductile.runtime.dispatcher import Dispatcher
from ductile.system import logs

REPO = Path(__file__).resolve().parents[1]

PLUGIN = REPO / "tests" / "plugins" / "catlike"
WORKERS = 4
DURABILITY = os.environ.get("BENCH_DURABILITY", "full")
REQUEST = b'{"protocol":2,"job_id":"x","command":"poll","config":{},"state":{},"context":{},"deadline_at":"x"}\n'


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each live thread of this process, by native thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_report(before: dict[int, float], after: dict[int, float], writer: int | None, n: int) -> str:
    slots = {t.native_id for t in threading.enumerate() if t.name.startswith("ductile-job")}
    spent = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
    w = spent.get(writer or -1, 0.0)
    s = sum(v for tid, v in spent.items() if tid in slots)
    rest = sum(spent.values()) - w - s
    return f"cpu per job: writer {w / n * 1e3:.3f} ms, slots {s / n * 1e3:.3f} ms, other threads {rest / n * 1e3:.3f} ms"


def baseline(n: int) -> float:
    entry = str(PLUGIN / "run.sh")

    def one(_: int) -> None:
        subprocess.run([entry], input=REQUEST, capture_output=True, check=True, start_new_session=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - started)


async def engine(n: int, root: Path, url: str | None = None) -> float:
    (root / "config.yaml").write_text(yaml.safe_dump({
        "service": {"max_workers": WORKERS, "log_level": "error", "durability": DURABILITY},
        "state": {"url": url} if url else {"path": "data/ductile.db"},
        "plugin_roots": [str(PLUGIN.parent)],
        "plugins": {"catlike": {"enabled": True}},
    }))
    config = load_config(find_config(str(root), None))
    catalog = load_catalog(config)
    events = EventLog(config.store(), DURABILITY, default_runner())
    await events.open()
    cmds = [EnqueueJob(job_id=str(uuid.uuid4()), plugin="catlike", command="poll", payload={}, submitted_by="api",
                       max_attempts=4) for _ in range(n)]
    await asyncio.gather(*(events.submit(lambda tx, c=c: jobs.enqueue(tx, c)) for c in cmds))
    dispatcher = Dispatcher(events, catalog, max_workers=WORKERS, env_passthrough=[], state_dir=config.state_path.parent)
    conn = events.reader()
    batches = events.stats.batches
    cpu_before = thread_cpu()
    started = time.perf_counter()
    task = asyncio.create_task(dispatcher.run())
    while True:
        await asyncio.sleep(0.05)
        done = conn.execute("SELECT COUNT(*) FROM job_queue WHERE status='succeeded'").fetchone()[0]
        if done >= n:
            break
    elapsed = time.perf_counter() - started
    writer = events._thread.native_id if events._thread is not None else None  # a bench may read the writer's thread id
    print(cpu_report(cpu_before, thread_cpu(), writer, n))
    print(f"commits per job: {(events.stats.batches - batches) / n:.3f}")
    await dispatcher.stop(5)
    await task
    conn.close()
    await events.aclose()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", help="--store postgres: an empty database (default: a throwaway server)")
    args = parser.parse_args()
    logs.configure("error")
    base = baseline(args.jobs)
    print(f"baseline: bare subprocess.run x{WORKERS} threads: {base:.1f} spawns/s")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = args.url
        if args.store == "postgres" and url is None:
            sys.path.insert(0, str(REPO))
            from tests.pg_server import start_server

            server = start_server()
            stack.callback(server.stop)
            url = stack.enter_context(server.fresh_database())
        value = asyncio.run(engine(args.jobs, Path(tmp), url if args.store == "postgres" else None))
    print(f"engine: {args.jobs} jobs, max_workers={WORKERS}, durable, {args.store}: {value:.1f} jobs/s")
    store = " store=postgres" if args.store == "postgres" else ""
    print(f"RESULT bench=jobs{store} value={value:.1f} baseline={base:.1f} ratio={value / base:.3f}")


if __name__ == "__main__":
    main()
