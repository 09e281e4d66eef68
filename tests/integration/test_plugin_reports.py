"""What a run reports besides its result (issue 9, item 5): the live ``job.preflight`` frame of a
pipeline step, the WARN for an ``ok`` without a result, and the plugin's own timing breakdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import TOKEN, Daemon, wait_until
from tests.integration.sse import SseReader

ONE_TRY = {"max_attempts": 1}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("reports")
    d = Daemon(root / "gw", {
        "behave": {"enabled": True, "retry": ONE_TRY},
        "first": {"enabled": True, "uses": "behave", "retry": ONE_TRY},
        "quirks": {"enabled": True, "retry": ONE_TRY},
    })
    d.config["pipelines"] = [
        {"name": "prep", "on": "prep.go", "steps": [{"id": "good", "uses": "first", "with": {"mode": "ok"}}]},
        {"name": "prep-bad", "on": "prep.bad", "steps": [
            {"id": "needy", "uses": "first", "with": {"mode": "ok", "msg": "{payload.nope}"}}]},
    ]
    d.write_config()
    d.start()
    yield d
    d.close()


def child_of(gw: Daemon, root: str) -> dict[str, Any]:
    def settled() -> list[dict[str, Any]] | None:
        nodes = gw.client.get(f"/job/{root}/tree").json()
        done = len(nodes) == 2 and all(n["status"] not in ("queued", "running") for n in nodes)
        return nodes if done else None

    return wait_until(settled, 20, what=f"the tree of {root}")[1]


def test_pipeline_steps_publish_a_live_preflight_decision(gw: Daemon) -> None:
    stream = SseReader(f"{gw.url}/events?types=job.preflight", {"Authorization": f"Bearer {TOKEN}"})
    try:
        wait_until(lambda: stream.status == 200, what="SSE stream open")
        good = child_of(gw, gw.trigger("behave", payload={"mode": "emit", "events": [{"type": "prep.go"}]}))
        bad = child_of(gw, gw.trigger("behave", payload={"mode": "emit", "events": [{"type": "prep.bad"}]}))
        assert (good["status"], bad["status"]) == ("succeeded", "failed")
        frames = stream.wait_for(lambda fs: {f["data"]["job_id"] for f in fs} >= {good["job_id"], bad["job_id"]})
    finally:
        stream.close()
    by_job = {f["data"]["job_id"]: f for f in frames}
    for job, decision, reason in ((good, "run", None), (bad, "fail", "with_error")):
        frame = by_job[job["job_id"]]
        assert frame["event"] == "job.preflight" and "id" not in frame  # live: never logged
        data = frame["data"]
        assert set(data) == {"at", "job_id", "plugin", "command", "decision", "reason"}
        assert (data["plugin"], data["command"], data["decision"], data["reason"]) == (
            "first", "handle", decision, reason)
    # A job outside any pipeline has no preflight.
    plain = gw.trigger("behave", payload={"mode": "ok"})
    gw.wait_job(plain)
    assert plain not in by_job


def test_ok_with_a_blank_result_succeeds_with_a_warning(gw: Daemon) -> None:
    job_id = gw.trigger("quirks", payload={"mode": "blank_result"})
    assert gw.wait_job(job_id)["status"] == "succeeded"
    warned = wait_until(lambda: [line for line in gw.log_lines()
                                 if line.get("job_id") == job_id and line.get("level") == "WARN"], 5,
                        what="a WARN about the blank result")
    assert [line["msg"] for line in warned] == ["plugin returned ok without a result"]


def test_stopwatch_keeps_the_timing_breakdown_plugins_report(gw: Daemon) -> None:
    runs = [
        [{"name": "fetch", "dur_ns": 30_000_000, "bytes": 512}, {"name": "parse", "dur_ns": 5_000_000, "count": 3}],
        [{"name": "fetch", "dur_ns": 70_000_000, "status": "ok"}, {"name": "", "dur_ns": 1}, {"dur_ns": 2},
         {"name": "bad", "dur_ns": -1}, "junk"],
    ]
    for subs in runs:
        assert gw.wait_job(gw.trigger("quirks", payload={"mode": "stopwatch", "subs": subs}))["status"] == "succeeded"
    body = gw.client.get("/stopwatch/quirks", params={"include_subs": "true"}).json()
    [step] = [s for s in body["steps"] if s["step"] == "poll"]
    assert step["subs"] == [
        {"name": "fetch", "sample_count": 2, "p50_ms": 30, "p95_ms": 70, "p99_ms": 70},
        {"name": "parse", "sample_count": 1, "p50_ms": 5, "p95_ms": 5, "p99_ms": 5},
    ]
