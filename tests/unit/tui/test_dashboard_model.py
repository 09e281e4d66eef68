"""The dashboard's state from frames (cli.md §3): rows out, no duplicates on resume."""

from ductile.tui.feed import SseParser
from ductile.tui.model import Dashboard, Frame, PipelineStatus, Status

from .fake_feed import FRAMES, HEALTH, NOW, QUEUE, SCHEDULES, SKILLS


def test_events_are_listed_newest_first_without_scheduler_ticks() -> None:
    d = Dashboard("http://x")
    for f in FRAMES:
        d.apply(f)
    assert [r.type for r in d.event_rows()] == ["scheduler.circuit_state_changed", "job.started", "job.failed",
                                                "job.completed", "job.started", "pipeline.enqueued"]
    assert d.event_rows()[2].summary == "HTTP 500" and d.event_rows()[2].job_id == "bbbb2222"
    assert d.beats == 1


def test_a_resumed_stream_replaying_seen_frames_adds_no_rows() -> None:
    d = Dashboard("http://x")
    for f in FRAMES[:5]:
        d.apply(f)
    assert d.last_event_id == "4"
    replay = [*FRAMES[2:5], Frame("job.enqueued", {"at": "2026-01-01T10:00:00Z", "job_id": "cccc"}, "4.1"),
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


S = 10**9


def _frame(type_: str, seconds: int, frame_id: str, **data: object) -> Frame:
    return Frame(type_, {"at": f"2026-01-01T09:59:{seconds:02d}Z", **data}, frame_id)


def test_a_running_job_shows_its_elapsed_time_from_the_clock_until_its_end_frame() -> None:
    d = Dashboard("http://x")
    d.apply(_frame("job.started", 30, "1", job_id="j1", plugin="mail", command="send"))
    assert d.job_rows(NOW) == [("running", "0m30s", "mail", "send", "j1", "")]
    assert d.job_rows(NOW + 95 * S)[0][1] == "2m05s"  # the same job, a later clock
    d.apply(_frame("job.failed", 40, "2", job_id="j1", plugin="mail", command="send", status="failed",
                   error="HTTP 500"))
    d.apply(_frame("job.retry_exhausted", 40, "2.1", job_id="j1", plugin="mail", final_error="HTTP 500"))
    assert d.job_rows(NOW) == [("failed", "20s ago", "mail", "send", "j1", "HTTP 500")]  # listed once


def test_completions_and_failures_are_listed_newest_first_after_the_running_jobs() -> None:
    d = Dashboard("http://x")
    d.apply(_frame("job.started", 1, "1", job_id="a", plugin="p", command="c"))
    d.apply(_frame("job.started", 2, "2", job_id="b", plugin="p", command="c"))
    d.apply(_frame("job.started", 3, "3", job_id="c", plugin="p", command="c"))
    d.apply(_frame("job.completed", 4, "4", job_id="a", plugin="p", command="c", status="succeeded"))
    d.apply(_frame("job.timed_out", 5, "5", job_id="b", plugin="p", command="c", status="timed_out", error="30s"))
    d.apply(_frame("job.started", 6, "6", job_id="d", plugin="p", command="c"))
    d.apply(_frame("job.retry_scheduled", 7, "7", job_id="d", plugin="p", command="c", reason="exit 1"))
    assert [(r[0], r[4]) for r in d.job_rows(NOW)] == [("running", "c"), ("timed_out", "b"), ("succeeded", "a")]
    assert d.job_ids() == ["c", "b", "a"]  # a retried job waits in the queue: neither running nor finished


def test_the_running_poll_adds_older_jobs_and_drops_one_whose_end_was_missed() -> None:
    d = Dashboard("http://x")
    d.apply(_frame("job.started", 50, "1", job_id="live", plugin="p", command="c"))
    d.apply(_frame("job.completed", 55, "2", job_id="done", plugin="p", command="c", status="succeeded"))
    # An answer read before "live" started, still listing "done": "done" stays ended.
    d.set_running([{"job_id": "old", "plugin": "echo", "command": "poll", "started_at": "2026-01-01T09:58:00Z"},
                   {"job_id": "done", "plugin": "p", "command": "c", "started_at": "2026-01-01T09:59:54Z"}])
    assert [(r[4], r[1]) for r in d.job_rows(NOW) if r[0] == "running"] == [("old", "2m00s"), ("live", "0m10s")]
    d.set_running([{"job_id": "live", "plugin": "p", "command": "c"}])
    assert [r[4] for r in d.job_rows(NOW) if r[0] == "running"] == ["old", "live"]  # one miss: kept
    d.set_running([{"job_id": "live", "plugin": "p", "command": "c"}])
    assert [r[4] for r in d.job_rows(NOW) if r[0] == "running"] == ["live"]


def test_open_breakers_come_from_frames_and_the_schedule_poll() -> None:
    d = Dashboard("http://x")
    d.set_schedules([{**SCHEDULES[0], "breaker_state": "half_open"},
                     {**SCHEDULES[0], "plugin": "ok", "breaker_state": "closed"}])
    assert d.breaker_rows(NOW) == [("echo", "poll", "half_open", "-", "-")]
    d.apply(_frame("scheduler.circuit_state_changed", 30, "1", plugin="mail", command="send", from_state="closed",
                   to_state="open", failure_count=3, reason="failure_threshold", job_id="j9"))
    assert d.breaker_rows(NOW) == [("echo", "poll", "half_open", "-", "-"), ("mail", "send", "open", "3", "30s ago")]
    assert [b.job_id for b in d.open_breakers()] == [None, "j9"]
    d.apply(_frame("scheduler.circuit_state_changed", 31, "2", plugin="echo", command="poll",
                   from_state="half_open", to_state="closed", failure_count=0, reason="success"))
    assert [r[0] for r in d.breaker_rows(NOW)] == ["mail"]


def test_a_schedule_poll_asked_before_a_breaker_frame_does_not_undo_it() -> None:
    d = Dashboard("http://x")
    asked_at = d.applied
    d.apply(_frame("scheduler.circuit_state_changed", 30, "1", plugin="echo", command="poll", from_state="closed",
                   to_state="open", failure_count=3, reason="failure_threshold"))
    d.set_schedules(SCHEDULES, asked_at)  # read before the frame: still "closed"
    assert [r[2] for r in d.breaker_rows(NOW)] == ["open"]
    d.set_schedules(SCHEDULES, d.applied)  # read after it (an operator reset since): closed
    assert d.breaker_rows(NOW) == []


def test_the_queue_line_reads_the_analytics_answer() -> None:
    d = Dashboard("http://x")
    assert d.queue_line() == "queue -"
    d.set_queue(QUEUE)
    assert d.queue_line() == "queued 12 retry 2 workers 3/4 oldest 42s"
    d.set_queue({**QUEUE, "oldest_queued_age_seconds": None})
    assert d.queue_line() == "queued 12 retry 2 workers 3/4"
