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
import cProfile
import functools
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from jobs_floor import LogKind, run_floor

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
# "error" by default (this bench's figures so far); "info" is the gateway's default, as bench/e2e.py
# runs it: the lines then go to /dev/null, formatted all the same.
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "error")
REQUEST = b'{"protocol":2,"job_id":"x","command":"poll","config":{},"state":{},"context":{},"deadline_at":"x"}\n'


@dataclass(frozen=True)
class Snapshot:
    """Where this process's CPU had gone at one instant: per live thread, in all, in its children."""

    wall: float
    threads: dict[int, tuple[str, float]]  # native id -> (name, CPU seconds)
    own: float  # RUSAGE_SELF, user + system, every thread that ever ran
    children: float  # RUSAGE_CHILDREN: every plugin process reaped so far


def snapshot() -> Snapshot:
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    threads: dict[int, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        threads[int(tid)] = (names.get(int(tid), "?"), (int(fields[11]) + int(fields[12])) / tick)
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return Snapshot(time.perf_counter(), threads, own.ru_utime + own.ru_stime,
                    children.ru_utime + children.ru_stime)


# Thread names by role: the writer (the real one or the floor's stand-in), the dispatcher's slots,
# the baseline's spawning threads; every other thread (the event loop first) is "other".
ROLES = (("writer", ("ductile-writer", "noop-writer")), ("slots", ("ductile-job",)), ("spawners", ("ThreadPoolExecutor",)))


@dataclass(frozen=True)
class Run:
    """One side of the bench: its rate and where its CPU went, per job."""

    name: str
    jobs: int
    before: Snapshot
    after: Snapshot

    @property
    def rate(self) -> float:
        return self.jobs / (self.after.wall - self.before.wall)

    def per_job_ms(self, seconds: float) -> float:
        return seconds / self.jobs * 1e3

    @property
    def cpu_per_job_ms(self) -> float:
        """Own and children's CPU per job: what the two cores were busy with."""
        return self.per_job_ms(self.after.own - self.before.own + self.after.children - self.before.children)

    def report(self) -> str:
        spent: dict[str, float] = {}
        for tid, (name, cpu) in self.after.threads.items():
            role = next((r for r, prefixes in ROLES if name.startswith(prefixes)), "other")
            prior = self.before.threads.get(tid)
            spent[role] = spent.get(role, 0.0) + cpu - (prior[1] if prior is not None else 0.0)
        threads = ", ".join(f"{role} {self.per_job_ms(s):.3f}" for role, s in spent.items() if s > 0)
        return (f"{self.name}: {self.rate:.1f} jobs/s; cpu per job {self.cpu_per_job_ms:.3f} ms: "
                f"own {self.per_job_ms(self.after.own - self.before.own):.3f} ms ({threads}), "
                f"children {self.per_job_ms(self.after.children - self.before.children):.3f} ms")


def baseline(n: int) -> Run:
    entry = str(PLUGIN / "run.sh")

    def one(_: int) -> None:
        subprocess.run([entry], input=REQUEST, capture_output=True, check=True, start_new_session=True)

    before = snapshot()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, range(n)))
        after = snapshot()  # while the pool's threads live, so their CPU is counted per thread
    return Run("baseline", n, before, after)


def write_config(root: Path, url: str | None = None) -> None:
    (root / "config.yaml").write_text(yaml.safe_dump({
        "service": {"max_workers": WORKERS, "log_level": "error", "durability": DURABILITY},
        "state": {"url": url} if url else {"path": "data/ductile.db"},
        "plugin_roots": [str(PLUGIN.parent)],
        "plugins": {"catlike": {"enabled": True}},
    }))


async def engine(n: int, root: Path, url: str | None = None) -> Run:
    write_config(root, url)
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
    before = snapshot()
    task = asyncio.create_task(dispatcher.run())
    while True:
        await asyncio.sleep(0.05)
        done = conn.execute("SELECT COUNT(*) FROM job_queue WHERE status='succeeded'").fetchone()[0]
        if done >= n:
            break
    after = snapshot()
    print(f"commits per job: {(events.stats.batches - batches) / n:.3f}")
    await dispatcher.stop(5)
    await task
    conn.close()
    await events.aclose()
    return Run("engine", n, before, after)


async def floor(n: int, root: Path, profile: bool, log_kind: LogKind = "noop") -> Run:
    """The real dispatcher and slots around a writer that costs nothing, or around the real durable
    log without projections (bench/jobs_floor.py)."""
    write_config(root)
    config = load_config(find_config(str(root), None))
    profiles: list[cProfile.Profile] = []
    if profile:
        threading.setprofile(functools.partial(_profile_slots, profiles))
    try:
        run = await run_floor(n, load_catalog(config), config.state_path.parent, "catlike", "poll", WORKERS, snapshot,
                              log_kind=log_kind, durability=DURABILITY)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    if run.jobs.succeeded != n:
        raise RuntimeError(f"the floor's jobs did not all succeed: {run.jobs.results[:3]}")
    assert run.measured is not None
    print(f"commits per job: {run.commits / n:.3f}")
    if profiles:
        stats = pstats.Stats(*profiles)
        print(f"the floor's slot threads, cProfile by thread CPU time (its own overhead inflates every figure), {n} jobs:")
        stats.sort_stats("tottime").print_stats(25)
    return Run("floor" if log_kind == "noop" else "floor_append", n, *run.measured)


def _profile_slots(profiles: list[cProfile.Profile], *_: object) -> None:
    """threading.setprofile's hook: profile each slot thread from its first call on."""
    sys.setprofile(None)
    if threading.current_thread().name.startswith("ductile-job"):
        prof = cProfile.Profile(time.thread_time)  # CPU, not waits: a slot mostly waits
        profiles.append(prof)
        prof.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", help="--store postgres: an empty database (default: a throwaway server)")
    parser.add_argument("--floor", action="store_true",
                        help="also the floors: the real dispatcher on a no-op writer, then on the durable log alone")
    parser.add_argument("--profile", action="store_true", help="with --floor: cProfile the floor's slot threads")
    args = parser.parse_args()
    logs.configure(LOG_LEVEL, stream=open(os.devnull, "w") if LOG_LEVEL != "error" else None)  # noqa: SIM115
    base = baseline(args.jobs)
    print(base.report())
    if args.floor:
        # The no-op floor, then the same floor on the real durable log without projections.
        floors: tuple[tuple[LogKind, str], ...] = (("noop", "jobs_floor"), ("append", "jobs_floor_append"))
        for kind, name in floors:
            with tempfile.TemporaryDirectory() as tmp:
                low = asyncio.run(floor(args.jobs, Path(tmp), args.profile, kind))
            print(low.report())
            print(f"RESULT bench={name} value={low.rate:.1f} baseline={base.rate:.1f} ratio={low.rate / base.rate:.3f} "
                  f"cpu_ratio={base.cpu_per_job_ms / low.cpu_per_job_ms:.3f}")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = args.url
        if args.store == "postgres" and url is None:
            sys.path.insert(0, str(REPO))
            from tests.pg_server import start_server

            server = start_server()
            stack.callback(server.stop)
            url = stack.enter_context(server.fresh_database())
        run = asyncio.run(engine(args.jobs, Path(tmp), url if args.store == "postgres" else None))
    print(run.report())
    store = " store=postgres" if args.store == "postgres" else ""
    print(f"RESULT bench=jobs{store} value={run.rate:.1f} baseline={base.rate:.1f} ratio={run.rate / base.rate:.3f} "
          f"cpu_ratio={base.cpu_per_job_ms / run.cpu_per_job_ms:.3f}")


if __name__ == "__main__":
    main()
