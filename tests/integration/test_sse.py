"""SSE /events: frame shapes, ids as log positions, lossless resume (also across restarts)."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from ductile.events.log import read_rows
from ductile.runtime.observations import frames as frames_of
from tests.integration.daemon import TOKEN, wait_until
from tests.integration.sse import SseReader

PLUGINS = {"shellok": {"enabled": True}, "behave": {"enabled": True, "retry": {"max_attempts": 2, "backoff_base": "100ms"}}}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def logged(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "id" in f]


def expected_ids(gw: Any, after: str, upto: str) -> list[str]:
    """Every frame id the log holds after ``after`` up to ``upto``, rebuilt from the events."""
    with gw.db() as db:
        ids = []
        for rec in read_rows(db, int(after)):
            for i, _ in enumerate(frames_of(rec)):
                ids.append(str(rec.position) if i == 0 else f"{rec.position}.{i}")
            if rec.position >= int(upto.split(".")[0]):
                break
    return ids


def test_job_lifecycle_frames_carry_the_documented_keys(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    reader = SseReader(f"{gw.url}/events?token={TOKEN}")
    wait_until(lambda: reader.status == 200, what="stream open")
    job_id = gw.trigger("shellok")
    frames = reader.wait_for(lambda fs: any(f.get("event") == "job.completed" for f in fs))
    by_type = {f["event"]: f["data"] for f in frames if f.get("data", {}).get("job_id") == job_id}
    assert set(by_type["job.enqueued"]) >= {"at", "job_id", "plugin", "command", "submitted_by", "direct"}
    assert by_type["job.enqueued"]["direct"] is True
    assert set(by_type["job.started"]) >= {"at", "job_id", "plugin", "command", "attempt", "max_attempts",
                                           "parent_job_id", "submitted_by"}
    assert by_type["job.completed"]["status"] == "succeeded"
    assert "duration_ms" in by_type["job.completed"]
    spawned = next(f for f in frames if f.get("event") == "plugin.spawned")
    assert "id" not in spawned, "live frames carry no id"
    ids = [int(f["id"].split(".")[0]) for f in logged(frames)]
    assert ids == sorted(ids)
    reader.close()


def test_failure_frames_include_retry_and_exhaustion_details(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    reader = SseReader(f"{gw.url}/events", AUTH)
    job_id = gw.trigger("behave", payload={"mode": "error", "error": "nope"})
    frames = reader.wait_for(lambda fs: any(f.get("event") == "job.failed" for f in fs), timeout=20)
    mine = {f["event"]: f["data"] for f in frames if f.get("data", {}).get("job_id") == job_id}
    retry = mine["job.retry_scheduled"]
    assert retry["retry_policy_owner"] == "core" and retry["max_attempts"] == 2 and retry["backoff_schedule"] == [100]
    exhausted = mine["job.retry_exhausted"]
    assert exhausted["reason"] == "attempts_exhausted" and exhausted["final_error"] == "nope"
    assert mine["job.failed"]["text"] == "Job failed [behave]: nope"
    reader.close()


def test_resume_from_last_event_id_delivers_exactly_the_later_frames(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    first = SseReader(f"{gw.url}/events", AUTH)
    gw.wait_job(gw.trigger("shellok"))
    frames = first.wait_for(lambda fs: any(f.get("event") == "job.completed" for f in fs))
    first.close()
    last = logged(frames)[-1]["id"]
    ids_after = [gw.wait_job(gw.trigger("shellok"))["job_id"] for _ in range(3)]
    resumed = SseReader(f"{gw.url}/events", {**AUTH, "Last-Event-ID": last})
    got = resumed.wait_for(lambda fs: sum(f.get("event") == "job.completed" for f in fs) >= 3)
    got_ids = [f["id"] for f in logged(got)]
    assert got_ids == expected_ids(gw, last, got_ids[-1]), "exactly the frames after N, in order"
    assert {f["data"]["job_id"] for f in got if f.get("event") == "job.completed"} == set(ids_after)
    resumed.close()


def test_resume_works_across_a_gateway_restart(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    reader = SseReader(f"{gw.url}/events", AUTH)
    gw.wait_job(gw.trigger("shellok"))
    frames = reader.wait_for(lambda fs: any(f.get("event") == "job.completed" for f in fs))
    reader.close()
    last = logged(frames)[-1]["id"]
    before = gw.wait_job(gw.trigger("shellok"))["job_id"]  # after N, before the restart
    assert gw.stop() == 0
    gw.start()
    after = gw.wait_job(gw.trigger("shellok"))["job_id"]
    resumed = SseReader(f"{gw.url}/events?last_event_id={last}", AUTH)
    got = resumed.wait_for(lambda fs: {before, after} <= {f["data"].get("job_id") for f in fs
                                                          if f.get("event") == "job.completed"})
    got_ids = [f["id"] for f in logged(got)]
    assert got_ids == expected_ids(gw, last, got_ids[-1]), "exactly the frames after N, across the restart"
    resumed.close()


def test_auth_rules_for_the_stream(gateway: Any) -> None:
    gw = gateway(PLUGINS, tokens=[{"token": TOKEN, "scopes": ["*"]}, {"token": "jobs-only", "scopes": ["jobs:ro"]}])
    with httpx.Client(base_url=gw.url, timeout=5) as c:
        assert c.get("/events").json() == {"error": "missing or invalid Authorization header"}
        assert c.get("/events?token=nope").status_code == 401
        r = c.get("/events?token=jobs-only")
        assert (r.status_code, r.json()) == (403, {"error": "insufficient scope"})
        r = c.get("/events", headers={**AUTH, "Last-Event-ID": "x1"})
        assert (r.status_code, r.json()) == (400, {"error": "invalid Last-Event-ID"})
        assert c.get(f"/jobs?token={TOKEN}").status_code == 401, "?token= only works on /events"


def test_a_client_that_never_reads_does_not_slow_jobs(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    stalled = socket.create_connection(("127.0.0.1", gw.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    try:
        started = time.monotonic()
        ids = [gw.trigger("shellok", payload={"n": i, "pad": "x" * 2000}) for i in range(60)]
        for job_id in ids:
            assert gw.wait_job(job_id, timeout=30)["status"] == "succeeded"
        assert time.monotonic() - started < 30
    finally:
        stalled.close()


def test_resume_from_an_event_with_extra_frames_delivers_those_extra_frames(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    job_id = gw.trigger("behave", payload={"mode": "error", "error": "nope"})
    gw.wait_job(job_id)
    with gw.db() as db:
        (position,) = db.execute("SELECT position FROM events WHERE type = 'JobFailed'").fetchone()
    # JobFailed yields job.retry_exhausted (id N) and job.failed (id N.1): resuming at N owes N.1.
    resumed = SseReader(f"{gw.url}/events", {**AUTH, "Last-Event-ID": str(position)})
    got = resumed.wait_for(lambda fs: len(logged(fs)) >= 1)
    first = logged(got)[0]
    assert (first["id"], first["event"]) == (f"{position}.1", "job.failed")
    assert first["data"]["job_id"] == job_id
    resumed.close()
    again = SseReader(f"{gw.url}/events", {**AUTH, "Last-Event-ID": f"{position}.1"})
    gw.wait_job(gw.trigger("shellok"))
    got = again.wait_for(lambda fs: any(f.get("event") == "job.completed" for f in fs))
    assert int(logged(got)[0]["id"].split(".")[0]) > position, "N.1 is not sent again"
    again.close()


def test_a_last_event_id_beyond_the_log_head_is_refused(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    with gw.db() as db:
        (head,) = db.execute("SELECT MAX(position) FROM events").fetchone()
    with httpx.Client(base_url=gw.url, timeout=5) as c:
        r = c.get("/events", headers={**AUTH, "Last-Event-ID": str(head + 1000)})
        assert (r.status_code, r.json()) == (400, {"error": "invalid Last-Event-ID"})
        r = c.get(f"/events?last_event_id={head + 1000}", headers=AUTH)
        assert r.status_code == 400
    at_head = SseReader(f"{gw.url}/events", {**AUTH, "Last-Event-ID": str(head)})
    wait_until(lambda: at_head.status == 200, what="a resume at the head to be accepted")
    at_head.close()
