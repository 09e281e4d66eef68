"""The crash soak's driver: a real gateway under load, SIGKILLed at seeded random points.

Eight client threads enqueue over HTTP without pause: plain ``sidefx`` jobs, and every fourth
request the ``soak`` pipeline, whose entry job emits ``FAN`` events that become its children.
A job counts as acknowledged only when its 202 arrived. The main thread sleeps a seeded random
delay, SIGKILLs the gateway, restarts it, and repeats; the clients ride through the restarts
(a refused or cut request is not acknowledged and is simply sent again as a new one). Then the
load stops, every job is waited to a terminal status, the gateway is stopped gracefully, and
``check`` reads the state DB and the plugin's side-effect file.

The seed fixes the kill schedule and the mix of requests; the exact kill points still depend on
timing, so a replay (``DUCTILE_SOAK_SEED``) reproduces the shape of a run, not its every byte.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ductile.vocabulary import TERMINAL_SQL
from tests.integration.daemon import TOKEN, Daemon, wait_until

SEED_ENV = "DUCTILE_SOAK_SEED"
CLIENTS = 8
FAN = 2  # children of each pipeline entry job
PIPELINE_EVERY = 4  # one request in four triggers the pipeline
# Each client sends one request per PACE seconds: a steady load the gateway keeps up with on two
# shared cores (an unpaced flood only measures the backlog's drain after the last kill).
PACE = 0.5


@dataclass(frozen=True)
class SoakPlan:
    kills: int
    min_jobs: int  # acknowledged requests to reach before the last kill (the load runs on until then)
    delay: tuple[float, float]  # seconds of load between a (re)start and the next kill
    seed: int


@dataclass
class SoakFigures:
    seed: int
    kills: int = 0
    acknowledged: int = 0  # 202s: plain jobs + pipeline entries
    jobs: int = 0  # every job in the DB, children included
    children: int = 0
    reruns: int = 0  # side effects beyond the first: the at-least-once price of a kill mid-run
    recovered: int = 0  # JobRecovered events: jobs a kill caught running
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"soak seed={self.seed} kills={self.kills} acknowledged={self.acknowledged} jobs={self.jobs} "
                f"children={self.children} recovered={self.recovered} reruns={self.reruns} "
                f"statuses={self.statuses} seconds={self.seconds:.1f}")


def seed_from_env() -> int:
    """``DUCTILE_SOAK_SEED`` when set (a replay), else a fresh one."""
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else random.SystemRandom().randrange(2**32)


def soak_gateway(root: Path) -> tuple[Daemon, Path]:
    """A gateway with the ``sidefx`` plugin and the ``soak`` pipeline; returns it and the side-effect file."""
    effects = root / "side-effects.log"
    gw = Daemon(root / "gw", {"sidefx": {"enabled": True, "config": {"log": str(effects)},
                                         "retry": {"max_attempts": 5, "backoff_base": "100ms"}}},
                service={"max_workers": 4, "shutdown_grace": "2s", "log_level": "info"})
    gw.config["pipelines"] = [{"name": "soak", "on": "soak.start", "steps": [
        {"id": "fan", "uses": "sidefx", "with": {"fan": FAN}},
        {"id": "leaf", "uses": "sidefx"},
    ]}]
    gw.write_config()
    return gw, effects


class Load:
    """CLIENTS threads enqueueing until stopped; ``acked`` holds every job id answered 202."""

    def __init__(self, gw: Daemon, seed: int) -> None:
        self.gw = gw
        self.seed = seed
        self.acked: list[str] = []
        self.pipeline_roots: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _client(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(headers=headers, timeout=5) as client:
            while not self._stop.is_set():
                pipeline = rng.randrange(PIPELINE_EVERY) == 0
                path = "/pipeline/soak?async=true" if pipeline else "/plugin/sidefx/poll"
                try:
                    resp = client.post(self.gw.url + path, json={"payload": {"client": index}})
                except httpx.HTTPError:
                    self._stop.wait(0.05)  # the gateway is down: its restart is on the way
                    continue
                if resp.status_code == 202:
                    with self._lock:
                        self.acked.append(resp.json()["job_id"])
                        if pipeline:
                            self.pipeline_roots.append(resp.json()["job_id"])
                self._stop.wait(PACE)  # any other answer (e.g. 503 while starting) is not acknowledged


@dataclass
class SoakRun:
    gw: Daemon
    load: Load
    effects: Path
    figures: SoakFigures


def run_soak(root: Path, plan: SoakPlan) -> SoakRun:
    """Run the soak; the gateway comes back stopped (gracefully), every job terminal."""
    rng = random.Random(plan.seed)
    started = time.monotonic()
    gw, effects = soak_gateway(root)
    gw.start()
    figures = SoakFigures(seed=plan.seed)
    try:
        with Load(gw, plan.seed) as load:
            for kill in range(plan.kills):
                time.sleep(rng.uniform(*plan.delay))
                if kill == plan.kills - 1:
                    wait_until(lambda: load.count() >= plan.min_jobs, 600, what=f"{plan.min_jobs} acknowledged jobs")
                gw.kill9()
                figures.kills += 1
                gw.start()
            time.sleep(rng.uniform(*plan.delay))
        wait_until(lambda: _outstanding(gw) == 0, 300, what="every job to reach a terminal status")
        assert gw.stop() == 0, gw.log_text()[-4000:]
    except BaseException:
        gw.close()
        raise
    figures.acknowledged = len(load.acked)
    figures.seconds = time.monotonic() - started
    return SoakRun(gw, load, effects, figures)


def _outstanding(gw: Daemon) -> int:
    with closing(gw.db()) as db:
        return db.execute(f"SELECT COUNT(*) FROM job_queue WHERE status NOT IN {TERMINAL_SQL}").fetchone()[0]


def check(run: SoakRun) -> list[str]:
    """What the soak promises, as a list of broken promises (empty: all held); fills ``run.figures``."""
    gw, load, effects, figures = run.gw, run.load, run.effects, run.figures
    broken: list[str] = []
    with closing(sqlite3.connect(f"file:{gw.state_db}?mode=ro", uri=True)) as db:
        jobs = dict(db.execute("SELECT job_id, status FROM job_queue").fetchall())
        terminal_records = Counter(j for (j,) in db.execute(
            f"SELECT job_id FROM job_transitions WHERE to_status IN {TERMINAL_SQL}"))
        children = Counter(p for (p,) in db.execute(
            "SELECT parent_job_id FROM job_queue WHERE parent_job_id IS NOT NULL"))
        figures.recovered = db.execute("SELECT COUNT(*) FROM events WHERE type = 'JobRecovered'").fetchone()[0]
    missing = [j for j in load.acked if j not in jobs]
    if missing:
        broken.append(f"{len(missing)} acknowledged jobs are missing, e.g. {missing[:3]}")
    not_once = {j: terminal_records[j] for j in jobs if terminal_records[j] != 1}
    if not_once:
        broken.append(f"{len(not_once)} jobs without exactly one terminal record, e.g. {list(not_once.items())[:3]}")
    childless = [r for r in load.pipeline_roots if jobs.get(r) == "succeeded" and children[r] != FAN]
    if childless:
        broken.append(f"{len(childless)} pipeline entries succeeded without their {FAN} children, e.g. {childless[:3]}")
    runs = Counter(effects.read_text().split()) if effects.exists() else Counter()
    unrun = [j for j, status in jobs.items() if status == "succeeded" and runs[j] == 0]
    if unrun:
        broken.append(f"{len(unrun)} succeeded jobs left no side effect, e.g. {unrun[:3]}")
    figures.jobs = len(jobs)
    figures.children = sum(children.values())
    figures.reruns = sum(n - 1 for n in runs.values() if n > 1)
    figures.statuses = dict(sorted(Counter(jobs.values()).items()))
    return broken


def selfcheck(gw: Daemon) -> tuple[int, str]:
    """``ductile system selfcheck`` on the stopped gateway: its exit code and its JSON report."""
    done = gw.cli("system", "selfcheck", "--config", str(gw.root), "--json", timeout=300)
    return done.returncode, done.stdout + done.stderr


