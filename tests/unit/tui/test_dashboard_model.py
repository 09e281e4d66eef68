"""The dashboard's state from frames (cli.md §3): rows out, no duplicates on resume."""

from ductile.tui.feed import SseParser
from ductile.tui.model import Dashboard, Frame, PipelineStatus, Status

from .fake_feed import FRAMES, HEALTH, NOW, SCHEDULES, SKILLS


def test_events_are_listed_newest_first_without_scheduler_ticks() -> None:
    d = Dashboard("http://x")
    for f in FRAMES:
        d.apply(f)
    assert [r.type for r in d.event_rows()] == ["job.failed", "job.completed", "job.started", "pipeline.enqueued"]
    assert d.event_rows()[0].summary == "HTTP 500" and d.event_rows()[0].job_id == "bbbb2222"
    assert d.beats == 1


def test_a_resumed_stream_replaying_seen_frames_adds_no_rows() -> None:
    d = Dashboard("http://x")
    for f in FRAMES:
        d.apply(f)
    assert d.last_event_id == "4"
    replay = [*FRAMES[2:], Frame("job.enqueued", {"at": "2026-01-01T10:00:00Z", "job_id": "cccc"}, "4.1"),
              Frame("job.enqueued", {"at": "2026-01-01T10:00:01Z", "job_id": "dddd"}, "5")]
    applied = [d.apply(f) for f in replay]
    assert applied == [True, False, False, True, True]  # the tick is live (no id): always taken
    assert [r.job for r in d.event_rows()][:3] == ["dddd", "cccc", "bbbb2222"]
    assert len(d.event_rows()) == 6


def test_only_the_newest_hundred_events_are_kept() -> None:
    d = Dashboard("http://x")
    for i in range(1, 131):
        d.apply(Frame("job.enqueued", {"at": "2026-01-01T10:00:00Z", "job_id": f"j{i}"}, str(i)))
    rows = d.event_rows()
    assert len(rows) == 100 and rows[0].job == "j130" and rows[-1].job == "j31"


def test_a_pipeline_is_running_until_its_jobs_end_then_ok_or_failed() -> None:
    d = Dashboard("http://x")
    d.set_skills(SKILLS)
    assert d.pipeline_rows(NOW) == [("intake", "api.intake", "idle", "-")]
    d.apply(FRAMES[0])
    d.apply(Frame("router.enqueued", {"at": "2026-01-01T09:59:02Z", "job_id": "child", "parent_job_id": "aaaa1111",
                                      "pipeline": "intake"}, "2"))
    d.apply(Frame("job.completed", {"at": "2026-01-01T09:59:03Z", "job_id": "aaaa1111"}, "3"))
    assert d.pipelines["intake"].status is PipelineStatus.RUNNING
    d.apply(Frame("job.timed_out", {"at": "2026-01-01T09:59:48Z", "job_id": "child"}, "4"))
    assert d.pipeline_rows(NOW) == [("intake", "api.intake", "failed", "12s ago")]
    d.apply(Frame("pipeline.enqueued", {"at": "2026-01-01T09:59:50Z", "job_id": "p2", "job_ids": ["p2"],
                                        "pipeline": "intake"}, "5"))
    d.apply(Frame("job.completed", {"at": "2026-01-01T09:59:51Z", "job_id": "p2"}, "6"))
    assert d.pipeline_rows(NOW)[0][2] == "ok" and d.pipeline_job("intake") == "p2"


def test_header_reads_disconnected_degraded_and_a_late_heartbeat() -> None:
    d = Dashboard("http://127.0.0.1:8080")
    assert d.status is Status.DISCONNECTED
    d.set_health(HEALTH)
    assert d.status is Status.OK
    assert d.header_lines()[0].startswith("OK  up 1h02m  queue 2  plugins 3  v0.1.0  tick ")
    assert "config /etc/ductile/config.yaml" in d.header_lines()[1] and "api http://127.0.0.1:8080" in d.header_lines()[1]
    d.set_health({**HEALTH, "status": "degraded", "scheduler": {"last_tick_at": None, "late": True}})
    assert d.status is Status.DEGRADED and d.header_lines()[0].endswith("tick late")
    d.set_disconnected()
    assert d.status is Status.DISCONNECTED
    d.set_health(None)
    assert d.status is Status.DISCONNECTED


def test_scheduler_rows_show_next_run_and_breaker() -> None:
    d = Dashboard("http://x")
    d.set_schedules(SCHEDULES)
    assert d.scheduler_rows() == [("echo", "fast", "poll", "every", "scheduled", "2026-01-01 10:05:00", "closed")]


def test_the_sse_parser_reads_ids_types_and_skips_keepalives_and_malformed_frames() -> None:
    p = SseParser()
    lines = [": keep-alive", "", "id: 7", "event: job.started", 'data: {"at":"x","job_id":"j"}', "",
             "event: scheduler.tick", 'data: {"at":"y"}', "", "id: 8", "event: job.failed", "data: [1]", "",
             "id: 9", "event: job.failed", "data: {oops", ""]
    frames = list(p.feed(lines))
    assert frames == [Frame("job.started", {"at": "x", "job_id": "j"}, "7"), Frame("scheduler.tick", {"at": "y"})]
    assert p.malformed == 2
