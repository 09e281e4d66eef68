"""Several gateway nodes on one PostgreSQL database (issue 17, items 3 and 4): real
``ductile system start`` processes sharing the test server's database, driven through their own
APIs, one of them killed with SIGKILL while it runs jobs."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ductile.events.log import iter_rows, verify_chain
from ductile.events.postgres_store import PostgresStore
from ductile.events.types import JobEnqueued, JobRecovered, JobStarted, JobSucceeded
from tests.integration.daemon import TOKEN, Daemon, wait_until
from tests.integration.sse import SseReader

LEASE = "5s"  # short, so a dead node's jobs move within ~7 s; not the 3s minimum, so a node starved of CPU
# on a loaded test machine is not taken for dead


def _node(root: Path, url: str, node: str, plugins: dict[str, Any], **service: Any) -> Daemon:
    gw = Daemon(root / node, plugins, service={"node_id": node, "node_lease": LEASE, **service})
    gw.config["state"] = {"url": url}
    gw.write_config()
    return gw


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str) -> Iterator[Callable[..., list[Daemon]]]:
    started: list[Daemon] = []

    def make(names: list[str], plugins: dict[str, Any], **service: Any) -> list[Daemon]:
        made = [_node(tmp_path, pg_url, n, plugins, **service) for n in names]
        started.extend(made)
        for gw in made:
            gw.start()
        return made

    yield make
    for gw in started:
        gw.close()


def _events(url: str) -> list[Any]:
    conn = PostgresStore(url).reader()
    try:
        return [rec.event for rec in iter_rows(conn)]
    finally:
        conn.close()


def _count(url: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    conn = PostgresStore(url).reader()
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def _url(gw: Daemon) -> str:
    return str(gw.config["state"]["url"])


def test_three_nodes_lose_and_double_no_job_when_one_is_killed(nodes: Callable[..., list[Daemon]]) -> None:
    total = 2000
    # Three lanes of 4 (parallelism is cluster-wide) for three nodes of 4 workers each: two nodes
    # cannot hold every lane slot, so every node runs jobs while there is a backlog.
    lanes = ["s1", "s2", "s3"]
    retry = {"max_attempts": 5, "backoff_base": "100ms"}
    plugins = {lane: {"enabled": True, "uses": "shellok", "parallelism": 4, "retry": retry} for lane in lanes}
    a, b, c = nodes(["gw-a", "gw-b", "gw-c"], plugins, max_workers=4)
    url = _url(a)
    # gw-c takes a smaller share, so that it is done while the others still enqueue and run jobs.
    shares = {a: 800, b: 800, c: total - 1600}
    submitted: dict[str, list[str]] = {}

    def enqueue(gw: Daemon) -> None:
        # Several requests in flight per node, as several clients would: the node's group commit
        # then takes them in one transaction instead of one round trip each.
        with ThreadPoolExecutor(4) as pool:
            submitted[gw.root.name] = list(pool.map(lambda i: gw.trigger(lanes[i % 3]), range(shares[gw])))

    threads = {gw: threading.Thread(target=enqueue, args=(gw,)) for gw in shares}
    started = time.monotonic()
    for t in threads.values():
        t.start()
    threads[c].join()
    enqueued_at = time.monotonic()
    # Mid-run: once gw-c runs jobs of its own, it dies without a word.
    running_on_c = "SELECT COUNT(*) FROM job_queue WHERE status = 'running' AND node = 'gw-c'"
    wait_until(lambda: _count(url, running_on_c) > 0, 30, interval=0.01, what="gw-c running jobs")
    c.kill9()
    killed_at = time.monotonic()
    assert threads[a].is_alive() or threads[b].is_alive(), "the kill came after the enqueues: raise the shares"
    for t in threads.values():
        t.join()
    ids = [job_id for part in submitted.values() for job_id in part]
    assert len(ids) == len(set(ids)) == total  # every enqueue acknowledged (202) by its node

    done = "SELECT COUNT(*) FROM job_queue WHERE status IN ('succeeded', 'failed', 'dead', 'timed_out', 'skipped')"
    wait_until(lambda: _count(url, done) >= total, 120, what="every job to finish")
    print(f"{total} jobs on 3 nodes: {time.monotonic() - started:.1f}s (gw-c's share in after {enqueued_at - started:.1f}s),"
          f" the last {time.monotonic() - killed_at:.1f}s after the kill")
    # gw-c's running jobs went back to the queue after its lease, without its restart.
    events = _events(url)
    recovered = [e for e in events if isinstance(e, JobRecovered)]
    assert recovered, "gw-c's running jobs were never recovered"
    assert time.monotonic() - killed_at < 120

    enqueued = {e.job_id for e in events if isinstance(e, JobEnqueued)}
    assert set(ids) <= enqueued  # every acknowledged enqueue is in the log
    succeeded = Counter(e.job_id for e in events if isinstance(e, JobSucceeded))
    assert set(succeeded) == enqueued, "a job was lost"  # zero lost
    assert max(succeeded.values()) == 1, "a job completed twice"  # zero double-completed
    starts = Counter((e.job_id, e.attempt) for e in events if isinstance(e, JobStarted))
    assert max(starts.values()) == 1, "one attempt was claimed twice"
    by_node = Counter(e.node for e in events if isinstance(e, JobStarted))
    assert set(by_node) == {"gw-a", "gw-b", "gw-c"}, by_node  # every node's dispatcher ran jobs
    # Every recovered job had been started by gw-c, the dead node.
    last_node: dict[str, str | None] = {}
    for e in events:
        if isinstance(e, JobStarted):
            last_node[e.job_id] = e.node
        elif isinstance(e, JobRecovered):
            assert last_node[e.job_id] == "gw-c", e

    assert a.stop() == 0 and b.stop() == 0
    conn = PostgresStore(url).reader()
    try:
        assert verify_chain(conn).ok
    finally:
        conn.close()
    check = a.cli("system", "selfcheck", "--json", "--config", str(a.root), timeout=120)
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["healthy"], [x for x in report["checks"] if not x["ok"]]


def _peak(spans: list[tuple[int, int]]) -> int:
    """The most spans open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = open_now = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


def test_parallelism_is_cluster_wide_and_max_workers_per_node(nodes: Callable[..., list[Daemon]], tmp_path: Path) -> None:
    plugins = {name: {"enabled": True, "uses": "serial", "parallelism": 2, "config": {"log": str(tmp_path / name)}}
               for name in ("left", "right")}
    a, b = nodes(["gw-a", "gw-b"], plugins, max_workers=2)
    jobs = [gw.trigger(name, payload={"seconds": 0.4}) for _ in range(4) for name in plugins for gw in (a, b)]
    for job_id in jobs:
        assert a.wait_job(job_id, timeout=60)["status"] == "succeeded"
    started: dict[str, JobStarted] = {}
    spans: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    for e in _events(_url(a)):
        if isinstance(e, JobStarted):
            started[e.job_id] = e
        elif isinstance(e, JobSucceeded):
            s = started[e.job_id]
            spans.setdefault(s.plugin, []).append((s.node or "", (s.at, e.at)))
    everything = [span for runs in spans.values() for _, span in runs]
    for plugin, runs in spans.items():  # parallelism 2 counts every node's running jobs
        assert _peak([span for _, span in runs]) <= 2, plugin
    for node in ("gw-a", "gw-b"):  # max_workers 2 counts this node's own
        assert _peak([span for runs in spans.values() for n, span in runs if n == node]) <= 2, node
    assert _peak(everything) > 2, "max_workers acted cluster-wide"


def _cluster(gw: Daemon) -> dict[str, Any]:
    resp = gw.client.get("/healthz", timeout=5)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["cluster"])


def test_the_scheduler_fails_over_when_its_holder_is_killed(nodes: Callable[..., list[Daemon]]) -> None:
    plugins = {"shellok": {"enabled": True, "schedules": [{"id": "tick", "every": "1s"}]}}
    a, b = nodes(["gw-a", "gw-b"], plugins)
    url = _url(a)
    wait_until(lambda: _cluster(a)["scheduler_node"] is not None, 20, what="a scheduler holder")
    holder_id = _cluster(a)["scheduler_node"]
    holder, standby = (a, b) if holder_id == "gw-a" else (b, a)
    assert _cluster(standby)["scheduler_node"] == holder_id and not _cluster(standby)["runs_scheduler"]
    assert _cluster(holder)["runs_scheduler"]
    assert _cluster(standby).get("node") == standby.config["service"]["node_id"]
    status = standby.cli("system", "status", "--json", "--config", str(standby.root))
    health = next(x for x in json.loads(status.stdout)["checks"] if x["name"] == "health")
    assert f"scheduler_node={holder_id}" in health["detail"], health  # no "scheduler is late" on a standby
    assert status.returncode == 0, status.stdout

    scheduled = "SELECT COUNT(*) FROM job_queue WHERE schedule_id IS NOT NULL"
    wait_until(lambda: _count(url, scheduled) >= 2, 20, what="scheduled jobs")
    holder.kill9()
    killed_at = time.monotonic()
    wait_until(lambda: _cluster(standby)["runs_scheduler"], 15, what="the standby to take the scheduler over")
    took = time.monotonic() - killed_at
    print(f"scheduler failover: {took:.1f}s after the holder's SIGKILL")
    assert took < 10
    assert _cluster(standby)["scheduler_node"] == standby.config["service"]["node_id"]
    after = _count(url, scheduled)
    wait_until(lambda: _count(url, scheduled) >= after + 2, 20, what="the new scheduler firing")
    # Never two schedulers: the fires of one entry keep their one-second spacing (none doubled).
    fires = [e for e in _events(url) if isinstance(e, JobEnqueued) and e.schedule_id == "tick"]
    gaps = [(y.at - x.at) / 1e9 for x, y in itertools.pairwise(fires)]
    assert all(g > 0.5 for g in gaps), gaps


def _logged(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "id" in f]


def test_every_node_streams_every_nodes_events_with_the_same_ids(nodes: Callable[..., list[Daemon]]) -> None:
    plugins = {"shellok": {"enabled": True}}
    a, b = nodes(["gw-a", "gw-b"], plugins)
    on_b = SseReader(f"{b.url}/events", {"Authorization": f"Bearer {TOKEN}"})
    try:
        wait_until(lambda: on_b.status == 200, what="stream open on gw-b")
        first = a.wait_job(a.trigger("shellok"))["job_id"]  # through gw-a's API: gw-b's stream sees it
        frames = on_b.wait_for(lambda fs: any(f.get("event") == "job.completed" and f["data"]["job_id"] == first
                                              for f in fs))
    finally:
        on_b.close()
    [started] = [f["data"] for f in frames if f.get("event") == "job.started" and f["data"]["job_id"] == first]
    assert started["node"] in {"gw-a", "gw-b"}  # the frame says which node runs the job
    last = _logged(frames)[-1]["id"]
    later = [gw.wait_job(gw.trigger("shellok"))["job_id"] for gw in (a, b, a)]
    # Resumed on the other node from gw-b's id: the same positions, nothing missed or repeated.
    resumed = {gw.root.name: SseReader(f"{gw.url}/events", {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": last})
               for gw in (a, b)}
    try:
        got = {name: r.wait_for(lambda fs: set(later) <= {f["data"].get("job_id") for f in fs
                                                          if f.get("event") == "job.completed"})
               for name, r in resumed.items()}
    finally:
        for r in resumed.values():
            r.close()
    upto = min(int(_logged(g)[-1]["id"].split(".")[0]) for g in got.values())
    ids = {name: [f["id"] for f in _logged(g) if int(f["id"].split(".")[0]) <= upto] for name, g in got.items()}
    assert ids["gw-a"] == ids["gw-b"] and ids["gw-a"], ids
    assert float(ids["gw-a"][0]) > float(last)


def test_a_node_claims_work_enqueued_through_another_at_once(nodes: Callable[..., list[Daemon]], tmp_path: Path) -> None:
    # One node's only worker is busy, so each job enqueued through its API is the other node's to
    # claim: woken by the enqueuing node's commit (NOTIFY), not by its own one-second poll.
    plugins = {"serial": {"enabled": True, "parallelism": 1, "config": {"log": str(tmp_path / "serial")}},
               "shellok": {"enabled": True}}
    a, b = nodes(["gw-a", "gw-b"], plugins, max_workers=1)
    busy = a.trigger("serial", payload={"seconds": 30})
    wait_until(lambda: a.job(busy)["status"] == "running", 20, what="a node busy")
    runner = _count(_url(a), "SELECT COUNT(*) FROM job_queue WHERE node = 'gw-a' AND status = 'running'")
    busy_node, free_node = (a, b) if runner else (b, a)
    waits = []
    for _ in range(5):
        job = busy_node.wait_job(busy_node.trigger("shellok"), timeout=20)
        assert job["status"] == "succeeded"
        time.sleep(0.2)
    url = _url(a)
    enqueued: dict[str, int] = {}
    for e in _events(url):
        if isinstance(e, JobEnqueued) and e.plugin == "shellok":
            enqueued[e.job_id] = e.at
        elif isinstance(e, JobStarted) and e.plugin == "shellok":
            assert e.node == free_node.root.name
            waits.append((e.at - enqueued[e.job_id]) / 1e9)
    waits.sort()
    assert len(waits) == 5 and waits[2] < 0.3, waits  # a poll alone would wait 0.5 s on the median


def test_a_scheduler_that_loses_its_lock_stops_its_gateway(nodes: Callable[..., list[Daemon]]) -> None:
    # Its session ended under it (here: terminated by the server): another node may hold the lock
    # now, so it must not schedule on; it exits 1 for its service manager to restart it as a standby.
    import psycopg

    plugins = {"shellok": {"enabled": True, "schedules": [{"id": "tick", "every": "1s"}]}}
    (a,) = nodes(["gw-a"], plugins)
    wait_until(lambda: _cluster(a)["runs_scheduler"], 20, what="gw-a to run the scheduler")
    with psycopg.connect(_url(a), autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE application_name = 'ductile-node:gw-a'").fetchall()
    assert ended == [(True,)]
    assert a.proc is not None
    assert a.proc.wait(30) == 1
    assert "the scheduler's lock was lost with the node session" in a.log_text()
