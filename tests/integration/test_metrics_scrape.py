"""``GET /metrics`` of a real daemon after real work, read whole by the official Prometheus client's
parser (api.md §6, issue 19 item 5): jobs that succeeded and failed, one waiting to retry, a
scheduled job that opened its breaker, and an SSE client connected while it is scraped.

Self-contained: the daemon, its plugins and all the work it measures are this module's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.daemon import TOKEN, Daemon, call, wait_until
from tests.integration.sse import SseReader
from tests.prometheus_text import SPEC_METRICS, parse_exposition

PLUGINS = {
    "behave": {"enabled": True, "retry": {"max_attempts": 1}},
    "counted": {"enabled": True, "uses": "behave", "retry": {"max_attempts": 1}},
    "slow_retry": {"enabled": True, "uses": "behave", "retry": {"max_attempts": 2, "backoff_base": "1h"}},
    # A scheduled job that fails opens the breaker at once (breakers count scheduled jobs only).
    "tripped": {"enabled": True, "uses": "behave", "retry": {"max_attempts": 1},
                "circuit_breaker": {"threshold": 1, "reset_after": "1h"},
                "schedules": [{"id": "trip", "every": "1s", "payload": {"mode": "error_noretry"}}]},
}
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300",
           "600", "+Inf"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("metrics") / "gw", PLUGINS,
               service={"tick_interval": "200ms", "shutdown_grace": "1s"})
    d.start()
    yield d
    d.close()


def scrape(gw: Daemon) -> tuple[dict[str, str], dict[str, float]]:
    resp = call(gw, "GET", "/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(resp.text)


def test_the_whole_exposition_after_real_work_parses_with_every_documented_family(gw: Daemon) -> None:
    for mode in ("ok", "ok", "error_noretry"):
        gw.wait_job(gw.trigger("counted", payload={"mode": mode}))
    gw.trigger("slow_retry", payload={"mode": "error"})  # fails once, then waits an hour to retry
    sse = SseReader(f"{gw.url}/events", {"Authorization": f"Bearer {TOKEN}"})
    try:
        types, samples = wait_until(
            lambda: (got := scrape(gw)) and got[1]["ductile_circuit_breakers_open"] == 1
            and got[1]["ductile_sse_subscribers"] == 1 and got[1]['ductile_queue_depth{status="retry_wait"}'] == 1
            and got, 20, what="the breaker open, the SSE client counted and the job waiting to retry")
    finally:
        sse.close()
    assert types == SPEC_METRICS  # every family of api.md §6, each of its type, and nothing else
    assert samples['ductile_jobs_completed_total{plugin="counted",status="succeeded"}'] == 2
    assert samples['ductile_jobs_completed_total{plugin="counted",status="failed"}'] == 1
    assert samples['ductile_jobs_completed_total{plugin="tripped",status="failed"}'] >= 1
    assert {k for k in samples if k.startswith("ductile_queue_depth")} == {
        f'ductile_queue_depth{{status="{s}"}}' for s in ("queued", "retry_wait", "running")}
    assert samples["ductile_workers_max"] == 4 and samples["ductile_workers_busy"] >= 0
    assert samples["ductile_event_log_position"] >= samples["ductile_events_appended_total"] >= 1
    assert samples["ductile_uptime_seconds"] >= 0
    assert samples['ductile_vault_deliveries_total{outcome="security_alert"}'] == 0
    assert any(k.startswith("ductile_build_info{version=") and v == 1 for k, v in samples.items())
    labels = 'plugin="counted",command="poll"'
    buckets = [samples[f'ductile_job_duration_seconds_bucket{{{labels},le="{le}"}}'] for le in BUCKETS]
    assert buckets == sorted(buckets), "buckets are cumulative"
    assert buckets[-1] == samples[f"ductile_job_duration_seconds_count{{{labels}}}"] == 3
    assert samples[f"ductile_job_duration_seconds_sum{{{labels}}}"] > 0


def test_a_reload_is_counted_by_outcome(gw: Daemon) -> None:
    before = scrape(gw)[1]['ductile_config_reloads_total{outcome="ok"}']
    assert call(gw, "POST", "/system/reload").status_code == 200
    assert scrape(gw)[1]['ductile_config_reloads_total{outcome="ok"}'] == before + 1
