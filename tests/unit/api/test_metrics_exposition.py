"""The Prometheus exposition of ``/metrics`` (api.md §6): counters from committed events, gauges
from the state DB, every documented family present, text format 0.0.4."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from ductile.events.record import Recorded
from ductile.events.types import (
    EventBase,
    JobDead,
    JobEnqueued,
    JobFailed,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobSucceeded,
)
from ductile.projections import breakers, queue
from ductile.runtime import metrics as metrics_module
from ductile.runtime.metrics import BUCKETS, Exposition, Metrics
from tests.async_reads import run_read
from tests.prometheus_text import SPEC_METRICS, parse_exposition

NS = 1_000_000_000
FAMILIES = SPEC_METRICS


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    for schema in (queue.SCHEMA, breakers.SCHEMA):
        for statement in schema.split(";"):
            if statement.strip():
                conn.execute(statement)
    return conn


def _records(*events: EventBase) -> list[Recorded]:
    return [Recorded(position=i + 1, event_id=bytes(16), stream="s", version=1, type=type(e).__name__, schema=1,
                     recorded_at=e.at, event=e) for i, e in enumerate(events)]


def enq(job_id: str, plugin: str = "enrich", command: str = "poll") -> JobEnqueued:
    return JobEnqueued(job_id=job_id, plugin=plugin, command=command, payload={}, submitted_by="api", max_attempts=1,
                       at=NS)


def render(m: Metrics, conn: sqlite3.Connection | None = None, **kw: Any) -> tuple[dict[str, str], dict[str, float]]:
    args = {"head": 42, "sse_subscribers": 2, "uptime_seconds": 17, **kw}
    return parse_exposition(run_read(conn or _db(), lambda c: m.render(c, **args)))


def test_an_idle_gateway_exposes_every_family_with_zero_counters() -> None:
    types, samples = render(Metrics(max_workers=4, version="1.2.3", commit="abc123"))
    assert types == FAMILIES
    assert samples == {
        'ductile_queue_depth{status="queued"}': 0, 'ductile_queue_depth{status="retry_wait"}': 0,
        'ductile_queue_depth{status="running"}': 0,
        "ductile_event_log_position": 42, "ductile_events_appended_total": 0, "ductile_sse_subscribers": 2,
        "ductile_workers_busy": 0, "ductile_workers_max": 4, "ductile_circuit_breakers_open": 0,
        'ductile_config_reloads_total{outcome="ok"}': 0, 'ductile_config_reloads_total{outcome="rejected"}': 0,
        'ductile_vault_deliveries_total{outcome="denied"}': 0, 'ductile_vault_deliveries_total{outcome="ok"}': 0,
        'ductile_vault_deliveries_total{outcome="security_alert"}': 0,
        'ductile_build_info{version="1.2.3",commit="abc123"}': 1, "ductile_uptime_seconds": 17,
        "ductile_scheduler_last_tick_timestamp_seconds": 0,
    }


def test_the_scheduler_heartbeat_is_exposed_as_unix_seconds() -> None:
    _, samples = render(Metrics(4, "v", "c"), last_tick_ns=1_700_000_000_500_000_000)
    assert samples["ductile_scheduler_last_tick_timestamp_seconds"] == 1_700_000_000.5


def test_terminal_jobs_are_counted_by_plugin_and_status_even_without_identity_on_the_event() -> None:
    m = Metrics(4, "v", "c")
    m.observe(_records(enq("a"), enq("b"), enq("c"), enq("d", plugin="notify"), enq("e")))
    m.observe(_records(
        JobStarted(job_id="a", attempt=1, at=2 * NS),
        JobSucceeded(job_id="a", attempt=1, result="{}", duration_ms=120, at=3 * NS),  # no plugin on the event
        JobFailed(job_id="b", attempt=1, status="timed_out", outcome="timeout", error="slow", reason="timeout",
                  duration_ms=5000, plugin="enrich", command="poll", at=3 * NS),
        JobDead(job_id="c", attempt=1, from_status="running", reason="crash", error="gone", at=3 * NS),
        JobSkipped(job_id="d", reason="breaker_open", at=3 * NS),
        JobRetryScheduled(job_id="e", attempt=1, outcome="error", error="x", reason="error", next_retry_at=9 * NS,
                          backoff_ms=1, duration_ms=40, at=3 * NS),
    ))
    _, samples = render(m)
    assert samples["ductile_events_appended_total"] == 11
    completed = {k: v for k, v in samples.items() if k.startswith("ductile_jobs_completed_total")}
    assert completed == {
        'ductile_jobs_completed_total{plugin="enrich",status="dead"}': 1,
        'ductile_jobs_completed_total{plugin="enrich",status="succeeded"}': 1,
        'ductile_jobs_completed_total{plugin="enrich",status="timed_out"}': 1,
        'ductile_jobs_completed_total{plugin="notify",status="skipped"}': 1,
    }
    labels = 'plugin="enrich",command="poll"'
    assert samples[f"ductile_job_duration_seconds_count{{{labels}}}"] == 3  # 0.12 s, 5 s and the retried 0.04 s
    assert samples[f"ductile_job_duration_seconds_sum{{{labels}}}"] == pytest.approx(5.16)
    assert samples[f'ductile_job_duration_seconds_bucket{{{labels},le="0.05"}}'] == 1
    assert samples[f'ductile_job_duration_seconds_bucket{{{labels},le="0.25"}}'] == 2
    assert samples[f'ductile_job_duration_seconds_bucket{{{labels},le="5"}}'] == 3
    assert samples[f'ductile_job_duration_seconds_bucket{{{labels},le="+Inf"}}'] == 3


def test_histogram_buckets_are_the_documented_bounds_cumulative_and_end_in_inf() -> None:
    m = Metrics(1, "v", "c")
    m.observe(_records(enq("a")))
    for ms in (1, 7, 700, 650_000):
        m.observe(_records(JobRetryScheduled(job_id="a", attempt=1, outcome="error", error="x", reason="error",
                                             next_retry_at=0, backoff_ms=0, duration_ms=ms, at=NS)))
    _, samples = render(m)
    bounds = [k.split('le="')[1].rstrip('"}') for k in samples if "_bucket{" in k]
    assert bounds == ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120",
                      "300", "600", "+Inf"]
    assert len(BUCKETS) == 16
    counts = [v for k, v in samples.items() if "_bucket{" in k]
    assert counts == sorted(counts)
    assert counts[0] == 1 and counts[1] == 2 and counts[-2] == 3 and counts[-1] == 4  # 650 s is only in +Inf


def test_queue_and_breaker_gauges_are_read_from_the_state_db() -> None:
    conn = _db()
    rows = [("q", "queued", None), ("w", "queued", 2**62), ("r1", "running", None), ("r2", "running", None),
            ("s", "succeeded", None)]
    for i, (job_id, status, next_retry) in enumerate(rows):
        conn.execute(
            "INSERT INTO job_queue(job_id, plugin, command, payload, status, attempt, max_attempts, submitted_by,"
            " created_at, enqueue_position, created_ns, next_retry_ns) VALUES (?, 'p', 'poll', '{}', ?, 1, 1, 't',"
            " '2026-01-01T00:00:00.000000Z', ?, 1, ?)",
            (job_id, status, i, next_retry),
        )
    for command, state in (("poll", "open"), ("handle", "closed"), ("sync", "half_open")):
        conn.execute("INSERT INTO circuit_breakers(plugin, command, state, failure_count, updated_at)"
                     " VALUES ('p', ?, ?, 3, 'x')", (command, state))
    _, samples = render(Metrics(8, "v", "c"), conn)
    assert samples['ductile_queue_depth{status="queued"}'] == 1
    assert samples['ductile_queue_depth{status="retry_wait"}'] == 1
    assert samples['ductile_queue_depth{status="running"}'] == 2
    assert samples["ductile_workers_busy"] == 2 and samples["ductile_workers_max"] == 8
    assert samples["ductile_circuit_breakers_open"] == 1


def test_webhook_reload_and_vault_counters_count_when_told() -> None:
    m = Metrics(1, "v", "c")
    m.webhook_request("/hooks/gh", 202)
    m.webhook_request("/hooks/gh", 202)
    m.webhook_request("/hooks/gh", 401)
    m.config_reload("rejected")
    m.vault_delivery("ok")
    _, samples = render(m)
    assert samples['ductile_webhook_requests_total{endpoint="/hooks/gh",status="202"}'] == 2
    assert samples['ductile_webhook_requests_total{endpoint="/hooks/gh",status="401"}'] == 1
    assert samples['ductile_config_reloads_total{outcome="rejected"}'] == 1
    assert samples['ductile_config_reloads_total{outcome="ok"}'] == 0
    assert samples['ductile_vault_deliveries_total{outcome="ok"}'] == 1


def test_label_values_are_escaped() -> None:
    out = Exposition()
    out.family("x_total", "counter", "A help\nwith a newline and a \\ backslash.")
    out.sample("x_total", 3, path='a"b\\c\nd')
    text = out.text()
    assert text.splitlines()[0] == "# HELP x_total A help\\nwith a newline and a \\\\ backslash."
    assert text.splitlines()[2] == 'x_total{path="a\\"b\\\\c\\nd"} 3'
    parse_exposition(text)


def test_the_job_identity_map_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(metrics_module, "MAX_TRACKED_JOBS", 3)
    m = Metrics(1, "v", "c")
    m.observe(_records(*(enq(f"j{i}") for i in range(10))))
    assert list(m._jobs) == ["j7", "j8", "j9"]
    m.observe(_records(JobSucceeded(job_id="j9", attempt=1, result="{}", at=NS)))
    assert list(m._jobs) == ["j7", "j8"]  # a terminal job is forgotten


@pytest.mark.parametrize(("text", "why"), [
    ("# TYPE ductile_workers_total gauge\nductile_workers_total 4\n", "gauge ductile_workers_total ends in _total"),
    ("ductile_orphan_total 1\n", "unknown ductile_orphan_total ends in _total"),
    ("# TYPE a gauge\na 1\na 2\n", "duplicate sample a"),
])
def test_the_exposition_check_refuses_what_promtool_would(text: str, why: str) -> None:
    # The checks the tests add to the official parser: each must be able to fail.
    with pytest.raises(AssertionError, match=why):
        parse_exposition(text)


def test_a_malformed_sample_line_is_refused_by_the_official_parser() -> None:
    with pytest.raises(ValueError):
        parse_exposition('# TYPE a gauge\na{status="x} 1\n')
