"""What the tests check ``/metrics`` against: the Prometheus text-format sample line and the
metric families api.md §6 requires."""

from __future__ import annotations

import re

SAMPLE_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})?'
    r" (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$"
)

SPEC_METRICS = {
    "ductile_queue_depth": "gauge", "ductile_jobs_completed_total": "counter",
    "ductile_job_duration_seconds": "histogram", "ductile_event_log_position": "gauge",
    "ductile_events_appended_total": "counter", "ductile_sse_subscribers": "gauge", "ductile_workers_busy": "gauge",
    "ductile_workers_max": "gauge", "ductile_circuit_breakers_open": "gauge",
    "ductile_webhook_requests_total": "counter", "ductile_config_reloads_total": "counter",
    "ductile_vault_deliveries_total": "counter", "ductile_build_info": "gauge", "ductile_uptime_seconds": "gauge",
    "ductile_scheduler_last_tick_timestamp_seconds": "gauge",
}


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, float]]:
    """``# TYPE`` kinds and sample values of a Prometheus text exposition, checking as it reads:
    the text ends with a newline, every comment is ``# TYPE``/``# HELP``, every sample is well
    formed, and no sample appears twice."""
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("#"):
            assert line.startswith("# HELP "), line
        else:
            assert SAMPLE_LINE.match(line), line
            key, _, value = line.rpartition(" ")
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = float(value)
    return types, samples
