"""Several nodes on one PostgreSQL store (docs/postgresql.md, "Several nodes"): what a node's
boot recovers, how a dead node's jobs move, and why a node that lost its lease cannot record the
result of a job another node re-queued."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from ductile.app import jobs
from ductile.commands.errors import InvalidTransition
from ductile.commands.jobs import OK, AttemptResult, EnqueueJob
from ductile.config import ConfigSource, load_config
from ductile.events.codec import decode, encode
from ductile.events.log import EventLog, WriteTx
from ductile.events.pg_nodes import NodeSession
from ductile.events.postgres_store import PostgresStore
from ductile.events.types import JobRecovered, JobStarted
from ductile.projections.registry import default_runner
from ductile.runtime.cluster import NODE_ID_FILE, Cluster, node_id

LANES = {"p": 4}


def threshold(_plugin: str) -> int:
    return 5


@pytest.fixture
def log(pg_url: str) -> Iterator[EventLog]:
    opened = EventLog(PostgresStore(pg_url), "full", default_runner()).open_sync()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sessions(pg_url: str) -> Iterator[dict[str, NodeSession]]:
    made: dict[str, NodeSession] = {}
    yield made
    for session in made.values():
        session.close()


def _session(sessions: dict[str, NodeSession], url: str, node: str, lease: float) -> NodeSession:
    session = sessions[node] = NodeSession(url, node, lease)
    session.register("test-host", 1)
    return session


def _enqueue(log: EventLog) -> str:
    job_id = str(uuid.uuid4())
    cmd = EnqueueJob(job_id=job_id, plugin="p", command="poll", payload={}, submitted_by="test", max_attempts=3)
    log.submit_sync(lambda tx: jobs.enqueue(tx, cmd))
    return job_id


def _claim_as(log: EventLog, node: str) -> str:
    def work(tx: WriteTx) -> list[jobs.ClaimedJob]:
        return jobs.claim_next(tx, 1, LANES, lambda _plugin, _command: None, node=node)[0]

    (claimed,) = log.submit_sync(work)
    return claimed.job_id


def _recovered(recs: list[object]) -> set[str]:
    return {rec.event.job_id for rec in recs if isinstance(rec.event, JobRecovered)}  # type: ignore[attr-defined]


def test_boot_recovers_its_own_and_ownerless_jobs_never_a_live_nodes(log: EventLog, pg_url: str,
                                                                     sessions: dict[str, NodeSession]) -> None:
    _session(sessions, pg_url, "gw-live", 30)
    _session(sessions, pg_url, "gw-me", 30)
    for _ in range(3):
        _enqueue(log)
    live, mine, gone = (_claim_as(log, node) for node in ("gw-live", "gw-me", "gw-gone"))

    recs = asyncio.run(Cluster(log, "gw-me", 30, pg_url).recover_at_boot(threshold))

    assert _recovered(recs) == {mine, gone}  # gw-gone holds no lease: nobody runs its job
    conn = log.reader()
    try:
        assert conn.execute("SELECT status FROM job_queue WHERE job_id = ?", (live,)).fetchone()[0] == "running"
    finally:
        conn.close()


def test_an_expired_lease_is_reaped_and_its_stale_attempt_cannot_complete(log: EventLog, pg_url: str,
                                                                          sessions: dict[str, NodeSession]) -> None:
    slow = _session(sessions, pg_url, "gw-slow", 0.2)
    job_id = _enqueue(log)
    assert _claim_as(log, "gw-slow") == job_id
    time.sleep(0.3)  # gw-slow renews nothing: a pause, a partition, a kill -9

    recs = asyncio.run(Cluster(log, "gw-other", 30, pg_url).reap(threshold))

    assert _recovered(recs) == {job_id}
    assert not slow.renew(), "a reaped node must learn that its lease was taken over"
    late = AttemptResult(outcome=OK, result="{}")
    with pytest.raises(InvalidTransition):  # attempt 1 was interrupted; the job is on attempt 2
        log.submit_sync(lambda tx: jobs.complete(tx, job_id, 1, late, backoff_base=1, jitter=0.0))


def test_a_schema_1_job_started_decodes_with_no_node() -> None:
    event = JobStarted(job_id="j", attempt=1, plugin="p", command="poll", at=1)
    old = encode(event)  # schema 1 had no node: the same bytes with the field absent decode alike
    raw = msgspec.msgpack.decode(old)
    raw.pop("node")
    decoded = decode("JobStarted", 1, msgspec.msgpack.encode(raw))
    assert isinstance(decoded, JobStarted) and decoded.node is None and decoded.job_id == "j"
    assert decode("JobStarted", 2, encode(JobStarted(job_id="j", attempt=1, node="gw-a", at=1))).node == "gw-a"  # type: ignore[attr-defined]


def test_a_generated_node_id_is_kept_whole_beside_the_state_and_reused(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "config.yaml").write_text("state:\n  path: data/ductile.db\nplugin_roots: [plugins]\n")
    config = load_config(ConfigSource(root_file=tmp_path / "config.yaml", config_dir=tmp_path, source="explicit"), {})
    made = node_id(config)
    kept = config.state_path.parent / NODE_ID_FILE
    assert kept.read_text() == made + "\n"
    assert node_id(config) == made  # the next boot is the same node, so it re-queues its own jobs
    assert sorted(p.name for p in kept.parent.iterdir()) == [NODE_ID_FILE]  # no temp file left behind
