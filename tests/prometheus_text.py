"""What the tests check ``/metrics`` against: the official Prometheus client's parser and the metric
families api.md §6 requires (issue 19 item 5: no hand-written pattern decides what is valid)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

SPEC_METRICS = {
    "ductile_queue_depth": "gauge", "ductile_jobs_completed_total": "counter",
    "ductile_job_duration_seconds": "histogram", "ductile_event_log_position": "gauge",
    "ductile_events_appended_total": "counter", "ductile_sse_subscribers": "gauge", "ductile_workers_busy": "gauge",
    "ductile_workers_max": "gauge", "ductile_circuit_breakers_open": "gauge",
    "ductile_webhook_requests_total": "counter", "ductile_config_reloads_total": "counter",
    "ductile_vault_deliveries_total": "counter", "ductile_build_info": "gauge", "ductile_uptime_seconds": "gauge",
    "ductile_scheduler_last_tick_timestamp_seconds": "gauge",
}


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sample_key(name: str, labels: dict[str, str]) -> str:
    """``name{k="v",...}`` in the labels' written order, as the tests name a sample."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{_escaped(v)}"' for k, v in labels.items()) + "}"


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, float]]:
    """Each family's declared name and type, and every sample's value, as
    ``prometheus_client.parser.text_string_to_metric_families`` reads ``text`` (it raises on a
    malformed line; a sample outside any declared family comes back ``unknown``). Checked besides:
    the text ends with a newline, no family is declared twice, no sample appears twice, and no gauge
    or untyped family ends in ``_total`` (Prometheus keeps that suffix for counters)."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        # The parser names a counter family without its ``_total``; the exposition declares it with.
        declared = family.name + "_total" if family.type == "counter" else family.name
        assert declared not in types, f"family {declared} declared twice"
        types[declared] = family.type
        if family.type in ("gauge", "unknown", "untyped"):
            assert not declared.endswith("_total"), f"{family.type} {declared} ends in _total"
        for sample in family.samples:
            key = sample_key(sample.name, sample.labels)
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return types, samples
