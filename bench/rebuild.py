"""`ductile system rebuild` of a realistic log, against reading + msgspec-decoding the same rows.

    .venv/bin/python bench/rebuild.py [--events 300000] [--runs 3] [--keep DIR]

* The log: jobs decided and folded by the real job state machine (``ductile.commands.jobs``:
  enqueue, claim, complete with retries and failures), pipelines (a ``ContextCreated`` and a
  ``PipelineTriggered`` whose children carry the parent, context, pipeline and step), schedules
  (planned once, then fired into jobs), plugin state and facts, breaker failure counts and vault
  changes, appended through a real ``EventLog`` (so the hash chain is the real one) in large units.
  It is generated once per size and kept under ``--keep`` (default: the system temp dir).
* value: events/s of ``python -m ductile.cli.main system rebuild --json`` on that log, the whole
  process timed (start-up included), every projection rebuilt.
* baseline: events/s of reading every row of the same log in chunks and decoding it into its
  event Struct (``ductile.events.record.from_row``), in this process: the floor any fold pays.
* ``--floor``: also the CPU of writing the rebuilt projections' final rows once, with
  ``executemany``, into fresh tables (the same DDL) and building their indexes, with the rows
  already in memory: what a fold that writes each final row once pays for its writes alone, so
  read+decode + these writes is the floor of that approach (and its ratio the best it can reach).

Each side runs ``--runs`` times, alternating; the medians are reported. On a shared machine the
wall clock is noisy, so each run also prints both sides' CPU time (the rebuild process's user +
system time, its fold worker's included, and each apart) and the lines before the last give the CPU
ratio and the critical-path CPU ratio (against the longer of the rebuild process's own CPU and its
worker's: what the wall clock of a quiet two-core machine follows). The last line is
``RESULT bench=rebuild value=<events/s> baseline=<events/s> ratio=<value/baseline>``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ductile.commands.jobs import (
    ERROR,
    OK,
    TIMEOUT,
    AttemptResult,
    ClaimJob,
    CompleteAttempt,
    EnqueueJob,
    JobState,
    decide,
    evolve,
)
from ductile.events.log import EventLog, WriteTx
from ductile.events.record import from_row
from ductile.events.types import (
    BreakerFailureCounted,
    ContextCreated,
    EventBase,
    PipelineTriggered,
    PluginFactAppended,
    PluginStateChanged,
    PrincipalRegistered,
    ScheduleFired,
    SchedulePlanned,
    SecretRolled,
    SecretSet,
    StopwatchSub,
    VaultInitialized,
    breaker_stream,
    context_stream,
    job_stream,
    plugin_stream,
    schedule_stream,
)
from ductile.projections.fold import is_deferred_index, statements
from ductile.projections.registry import ALL
from ductile.vocabulary import PrincipalKind, SecretPattern, VaultActor

GENERATOR_VERSION = 1  # bump when the generated log changes, so a kept one is not reused
NS = 1_000_000_000
PLUGINS = ("echo", "github", "slack", "rss", "backup")
UNIT_EVENTS = 20_000  # events per writer unit while generating: one commit each


class LogBuilder:
    """Builds streams of real events; ``flush`` appends them through the log."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 1_700_000_000 * NS
        self.pending: list[tuple[str, list[EventBase]]] = []
        self.count = 0
        self.fact_seq: dict[str, int] = {}
        self.secrets: list[str] = []

    def tick(self) -> int:
        self.now += self.rng.randrange(1, 50_000_000)
        return self.now

    def add(self, stream: str, events: list[EventBase]) -> None:
        self.pending.append((stream, events))
        self.count += len(events)

    def job(self, plugin: str, *, submitted_by: str = "api", **extra: Any) -> str:
        """One job through the real state machine: attempts fail and retry, some exhaust."""
        rng = self.rng
        job_id = str(uuid.UUID(int=rng.getrandbits(128)))
        events: list[EventBase] = []
        state: JobState | None = None

        def run(cmd: Any) -> None:
            nonlocal state
            for event in decide(cmd, state, self.tick()):
                state = evolve(state, event)
                events.append(event)

        run(EnqueueJob(job_id=job_id, plugin=plugin, command="poll", submitted_by=submitted_by, max_attempts=3,
                       payload={"message": "hello", "n": rng.randrange(1000), "tags": ["a", "b"]}, **extra))
        while state is not None and state.status in ("queued", "running"):
            if state.status == "queued":
                run(ClaimJob(job_id=job_id, config_snapshot_id="snap-1"))
                continue
            outcome = rng.choices((OK, ERROR, TIMEOUT), (80, 15, 5))[0]
            subs = [StopwatchSub(name="fetch", dur_ns=rng.randrange(10**6, 10**8))]
            result = AttemptResult(outcome=outcome, exit_code=0 if outcome == OK else 1,
                                   duration_ms=rng.randrange(5, 900), subs=subs,
                                   result='{"status":"ok","result":"done"}' if outcome == OK else None,
                                   error="" if outcome == OK else "upstream said 503",
                                   stderr="" if outcome == OK else "warning: retrying\n")
            run(CompleteAttempt(job_id=job_id, attempt=state.attempt, result=result, backoff_base=NS,
                                jitter=rng.random()))
            if outcome != OK and rng.random() < 0.5:
                self.add(breaker_stream(plugin, "poll"), [BreakerFailureCounted(
                    plugin=plugin, command="poll", failure_count=1, job_id=job_id, last_failure_at=self.now,
                    at=self.now)])
        self.add(job_stream(job_id), events)
        if rng.random() < 0.3:
            self.add(plugin_stream(plugin), [PluginStateChanged(
                plugin=plugin, state={"cursor": rng.randrange(10**9), "etag": uuid.uuid4().hex}, job_id=job_id,
                at=self.tick())])
        if rng.random() < 0.1:
            seq = self.fact_seq[plugin] = self.fact_seq.get(plugin, 0) + 1
            self.add(plugin_stream(plugin), [PluginFactAppended(
                plugin=plugin, seq=seq, fact_type="item.seen", fact={"id": seq, "title": "an item"},
                job_id=job_id, command="poll", at=self.tick())])
        return job_id

    def pipeline(self) -> None:
        rng = self.rng
        parent = self.job(rng.choice(PLUGINS))
        context_id = str(uuid.UUID(int=rng.getrandbits(128)))
        self.add(context_stream(context_id), [ContextCreated(
            context_id=context_id, parent_id=None, pipeline="digest", step_id="fetch", claims={"user": "ops"},
            context={"ductile": {"pipeline": "digest"}, "items": rng.randrange(50)}, at=self.tick())])
        children = [self.job(plugin, submitted_by="route", parent_job_id=parent, event_context_id=context_id,
                             pipeline="digest", step_id=f"step{i}")
                    for i, plugin in enumerate(rng.sample(PLUGINS, 2))]
        self.add(f"pipeline-{context_id}", [PipelineTriggered(pipeline="digest", job_ids=children, at=self.tick())])

    def schedule(self, plugin: str) -> None:
        stream = schedule_stream(plugin, "every-minute")
        if (plugin, "planned") not in self.fact_seq:
            self.fact_seq[(plugin, "planned")] = 1  # type: ignore[index]
            self.add(stream, [SchedulePlanned(
                plugin=plugin, schedule_id="every-minute", plan_key="k1", command="poll", mode="interval",
                timezone="UTC", next_slot_at=self.now, next_run_at=self.now, first_seen_at=self.now,
                reason="config", at=self.tick())])
        job_id = self.job(plugin, submitted_by="scheduler", schedule_id="every-minute")
        self.add(stream, [ScheduleFired(plugin=plugin, schedule_id="every-minute", command="poll", slot=self.now,
                                        job_id=job_id, next_slot_at=self.now + 60 * NS,
                                        next_run_at=self.now + 60 * NS, at=self.tick())])

    def vault(self) -> None:
        rng = self.rng
        if not self.secrets:
            self.add("vault", [VaultInitialized(actor=VaultActor.CLI, blob_sha256="a" * 64, at=self.tick()),
                               PrincipalRegistered(actor=VaultActor.CLI, name="ci", kind=PrincipalKind.PLUGIN,
                                                   blob_sha256="b" * 64, at=self.tick())])
        if not self.secrets or rng.random() < 0.4:
            name = f"secret-{len(self.secrets)}"
            self.secrets.append(name)
            self.add("vault", [SecretSet(actor=VaultActor.ADMIN_TOKEN, name=name, created=True,
                                         pattern=SecretPattern.MANUAL, grants=["ci"], blob_sha256="c" * 64,
                                         at=self.tick())])
        else:
            self.add("vault", [SecretRolled(actor=VaultActor.CLI, name=rng.choice(self.secrets), roll_count=1,
                                            blob_sha256="d" * 64, at=self.tick())])

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.55:
            self.job(self.rng.choice(PLUGINS))
        elif roll < 0.75:
            self.pipeline()
        elif roll < 0.98:
            self.schedule(self.rng.choice(PLUGINS))
        else:
            self.vault()


def _append_all(pending: list[tuple[str, list[EventBase]]]) -> Any:
    def work(tx: WriteTx) -> None:
        for stream, events in pending:
            tx.append(stream, events)

    return work


def generate(path: Path, events: int) -> int:
    """A log of at least ``events`` realistic events at ``path`` (projections built by the rebuild)."""
    builder = LogBuilder(seed=15)
    log = EventLog(path, durability="normal", projections=None).open_sync()
    try:
        while builder.count < events:
            unit_end = min(events, builder.count + UNIT_EVENTS)
            while builder.count < unit_end:
                builder.step()
            log.submit_sync(_append_all(builder.pending))
            builder.pending = []
    finally:
        log.close()
    return builder.count



def read_and_decode(path: Path, chunk: int = 5000) -> int:
    conn = sqlite3.connect(path)
    try:
        position, count = 0, 0
        while True:
            rows = conn.execute(
                "SELECT position, event_id, stream, version, type, schema, recorded_at, data, chain FROM events"
                " WHERE position > ? ORDER BY position LIMIT ?", (position, chunk)).fetchall()
            if not rows:
                return count
            for row in rows:
                from_row(row)
            count += len(rows)
            position = rows[-1][0]
    finally:
        conn.close()


def write_floor(path: Path) -> float:
    """CPU seconds to write every row of the rebuilt projections of ``path`` (read beforehand) into
    fresh tables in a scratch DB beside it, one ``executemany`` per table, indexes after."""
    source = sqlite3.connect(path)
    try:
        rows = {t: source.execute(f"SELECT * FROM {t}").fetchall() for p in ALL for t in p.tables}
    finally:
        source.close()
    scratch = path.with_name("floor.db")
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(scratch, isolation_level=None)
    # As the fold binds: NULL through a registered adapter (fold.py says why).
    sqlite3.register_adapter(type(None), {}.get)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("BEGIN IMMEDIATE")
        begun = time.process_time()
        for p in ALL:
            for statement in statements(p.schema):
                if not is_deferred_index(statement):
                    conn.execute(statement)
            for table in p.tables:
                if rows[table]:
                    marks = ", ".join("?" * len(rows[table][0]))
                    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])
            for statement in statements(p.schema):
                if is_deferred_index(statement):
                    conn.execute(statement)
        conn.execute("COMMIT")
        return time.process_time() - begun
    finally:
        sqlite3.adapters.pop((type(None), sqlite3.PrepareProtocol), None)
        conn.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)


# ``python -m ductile.cli.main`` as runpy runs it, which at exit also reports on stderr the process's
# own CPU and its children's (the fold worker's): two processes' CPU cannot be told apart from outside.
_CLI = """import atexit, resource, runpy, sys
def _report():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU own={own.ru_utime + own.ru_stime:.3f} children={kids.ru_utime + kids.ru_stime:.3f}", file=sys.stderr)
atexit.register(_report)
sys.argv[0] = "ductile"
runpy.run_module("ductile.cli.main", run_name="__main__", alter_sys=True)
"""


def rebuild(root: Path) -> dict[str, Any]:
    """The rebuild's JSON report, with ``own_cpu`` and ``worker_cpu`` (seconds) added."""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _CLI, "system", "rebuild", "--config", str(root), "--json"],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rebuild failed ({done.returncode}): {done.stderr}")
    own, children = done.stderr.strip().splitlines()[-1].removeprefix("CPU ").split()
    return {**json.loads(done.stdout), "own_cpu": float(own.removeprefix("own=")),
            "worker_cpu": float(children.removeprefix("children="))}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--floor", action="store_true", help="also measure the write floor (see above)")
    args = parser.parse_args()
    root = args.keep / f"ductile-bench-rebuild-{args.events}-v{GENERATOR_VERSION}"
    state = root / "state.db"
    if not state.exists():
        root.mkdir(parents=True, exist_ok=True)
        (root / "plugins").mkdir(exist_ok=True)
        (root / "config.yaml").write_text("state:\n  path: state.db\nplugin_roots:\n  - plugins\n")
        begun = time.perf_counter()
        head = generate(state.with_suffix(".partial"), args.events)
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{state.with_suffix('.partial')}{suffix}")
            if part.exists():
                part.rename(f"{state}{suffix}")
        print(f"generated {head} events in {time.perf_counter() - begun:.1f}s at {state}", file=sys.stderr)
    values, baselines, cpu_ratios, own_cpus, path_ratios = [], [], [], [], []
    for run in range(args.runs):
        begun, cpu = time.perf_counter(), _children_cpu()
        report = rebuild(root)
        wall, cpu = time.perf_counter() - begun, _children_cpu() - cpu
        events = report["position"]
        values.append(events / wall)
        begun, own_cpu = time.perf_counter(), time.process_time()
        decoded = read_and_decode(state)
        baselines.append(decoded / (time.perf_counter() - begun))
        own_cpu = time.process_time() - own_cpu
        own_cpus.append(own_cpu)
        cpu_ratios.append(own_cpu / cpu)
        # The rebuild process's own CPU is its critical path when its fold worker (on the other core)
        # is the shorter one: the ratio that holds for the wall clock of a quiet two-core machine.
        path_ratios.append(own_cpu / max(report["own_cpu"], report["worker_cpu"]))
        slowest = ", ".join(f"{p['name']} {p['seconds']}s"
                            for p in sorted(report["projections"], key=lambda p: -p["seconds"])[:3])
        print(f"run {run + 1}: rebuild {events} events in {wall:.2f}s ({values[-1]:,.0f}/s, in-process"
              f" {report['seconds']}s, CPU {cpu:.2f}s: its own {report['own_cpu']:.2f}s, its worker's"
              f" {report['worker_cpu']:.2f}s; slowest {slowest}), read+decode {baselines[-1]:,.0f}/s"
              f" (CPU {own_cpu:.2f}s)", file=sys.stderr)
    value, baseline = statistics.median(values), statistics.median(baselines)
    if args.floor:
        writes = statistics.median(write_floor(state) for _ in range(args.runs))
        decode = statistics.median(own_cpus)
        print(f"floor: read+decode CPU {decode:.2f}s + final-row writes CPU {writes:.2f}s;"
              f" best cpu ratio of a write-once fold: {decode / (decode + writes):.3f}")
    print(f"cpu ratio (read+decode CPU / rebuild CPU, median): {statistics.median(cpu_ratios):.3f}")
    print(f"critical-path cpu ratio (read+decode CPU / the longer of the rebuild process's own CPU and its"
          f" worker's, median): {statistics.median(path_ratios):.3f}")
    print(f"RESULT bench=rebuild value={value:.0f} baseline={baseline:.0f} ratio={value / baseline:.3f}")


if __name__ == "__main__":
    main()
