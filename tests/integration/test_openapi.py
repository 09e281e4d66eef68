"""OpenAPI 3.1 at /openapi.json describes every route, and schemathesis finds no 5xx in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ductile.vault.keys import generate_identity, write_key_file
from tests.integration.daemon import TOKEN

PLUGINS = {"shellok": {"enabled": True}, "behave": {"enabled": True, "retry": {"max_attempts": 1}}}


def test_document_lists_every_route_and_each_plugin_command(gateway: Any) -> None:
    gw = gateway(PLUGINS)
    doc = gw.client.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "Ductile Gateway"
    assert doc["components"]["securitySchemes"]["BearerAuth"] == {"type": "http", "scheme": "bearer"}
    for path in ("/", "/healthz", "/plugins", "/skills", "/jobs", "/job/{job_id}", "/job/{job_id}/tree", "/job-logs",
                 "/scheduler/jobs", "/analytics/summary", "/analytics/queue", "/stopwatch/{plugin}", "/topology",
                 "/system/reload", "/config/view", "/system/doctor", "/system/selfcheck", "/metrics", "/events",
                 "/plugin/{plugin}/{command}", "/vault/secret", "/vault/secret/roll", "/vault/secret/revoke",
                 "/vault/principal", "/vault/principal/revoke", "/vault/principal/purge", "/vault/principal/roll",
                 "/vault/audit"):
        assert path in doc["paths"], path
    op = doc["paths"]["/plugin/behave/custom_cmd"]["post"]
    assert op["operationId"] == "behave__custom_cmd"
    assert op["tags"] == ["behave"]
    assert {"202", "400", "401", "403", "413", "500"} <= set(op["responses"])
    assert httpx.get(f"{gw.url}/openapi.json").status_code == 401
    # Litestar writes the shapes from the handlers' types: api.md's, with the one error body.
    schemas = doc["components"]["schemas"]
    assert set(schemas["TriggerAccepted"]["required"]) == {"job_id", "status", "plugin", "command"}
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert op["responses"]["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TriggerAccepted"}
    assert op["responses"]["413"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert op["security"] == [{"BearerAuth": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"] and "security" not in doc["paths"]["/"]["get"]
    assert "degraded" not in schemas["Health"]["required"] and "queue_depth" in schemas["Health"]["required"]
    assert doc["paths"]["/job-logs"]["get"]["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(gateway: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    gw = gateway(PLUGINS, start=False)
    # A loaded vault: its routes then answer the API token's requests 401 (not the admin token),
    # rather than 503 for want of a vault, and schemathesis exercises their bodies and auth.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    write_key_file(gw.root / "age.key", generate_identity(), "test")
    init = subprocess.run([sys.executable, "-m", "ductile.cli.main", "vault", "init", "--config", str(gw.root)],
                          capture_output=True, text=True, timeout=60, cwd=gw.root)
    assert init.returncode == 0, init.stderr
    gw.start()
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    # api.md §4.2 answers an unknown plugin or command on the generic trigger with 400, not 404:
    # that refusal of a schema-valid path is the spec's, so the acceptance check is told to expect it.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[[operations]]\ninclude-path = "/plugin/{plugin}/{command}"\n'
                      '[operations.checks.positive_data_acceptance]\n'
                      'expected-statuses = ["2xx", "400", "401", "403", "404"]\n'
                      # vault.md §7: the API token is never the vault admin token: 401 to valid input.
                      '[[operations]]\ninclude-path-regex = "^/vault/"\n'
                      '[operations.checks.positive_data_acceptance]\n'
                      'expected-statuses = ["2xx", "400", "401"]\n')
    result = subprocess.run(
        [st, "--config-file", str(config), "run", f"{gw.url}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
         "--checks", "all",
         "--max-examples", "10", "--seed", "42", "--request-timeout", "10",
         # A stream never ends; a reload storm would only test the reload lock (test_reload.py does).
         "--exclude-path", "/events", "--exclude-path", "/system/reload"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 failures" in result.stdout or "passed" in result.stdout


def _answer(doc: dict[str, Any], path: str, status: str = "200", method: str = "get") -> dict[str, Any]:
    """The schema a route's answer has in the document, its ``$ref`` followed."""
    schema: dict[str, Any] = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return schema


def _ref(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return schema


def test_every_json_answer_has_its_spec_shape_not_a_bare_object(gateway: Any) -> None:
    """Each family of answers lists api.md's keys and marks its required ones, so a shape that
    regresses to a bare ``object`` fails here (api.md §3, §4)."""
    doc = gateway(PLUGINS).client.get("/openapi.json").json()

    # The job (§4.3): every key api.md lists, and the ones always present are required.
    job = _answer(doc, "/job/{job_id}")
    assert set(job["properties"]) == {
        "job_id", "status", "plugin", "command", "submitted_by", "attempt", "max_attempts", "parent_job_id",
        "pipeline", "step_id", "created_at", "started_at", "completed_at", "next_retry_at", "result", "last_error"}
    assert {"job_id", "status", "plugin", "command", "submitted_by", "attempt", "created_at"} <= set(job["required"])
    assert not {"result", "last_error", "started_at", "completed_at", "parent_job_id"} & set(job["required"])

    # A tree node (§4.3): the answer is an array of them.
    tree = _answer(doc, "/job/{job_id}/tree")
    assert tree["type"] == "array"
    node = _ref(doc, tree["items"])
    assert set(node["properties"]) == {"job_id", "parent_job_id", "plugin", "command", "status", "pipeline",
                                       "step_id", "attempt", "created_at", "started_at", "completed_at", "result",
                                       "last_error"}
    assert set(node["required"]) == {"job_id", "plugin", "command", "status", "attempt", "created_at"}

    # List pages: `{jobs, total}` and `{logs, total}`, each entry with its keys.
    for path, key, entry_required in (
        ("/jobs", "jobs", {"job_id", "plugin", "command", "status", "submitted_by", "attempt", "created_at"}),
        ("/job-logs", "logs", {"job_id", "log_id", "plugin", "command", "status", "attempt", "submitted_by",
                               "created_at", "completed_at"}),
    ):
        page = _answer(doc, path)
        assert set(page["required"]) == {key, "total"}, path
        entry = _ref(doc, page["properties"][key]["items"])
        assert set(entry["required"]) == entry_required, path
    assert {"last_error", "stderr", "result"} <= set(_ref(doc, _answer(doc, "/job-logs")["properties"]["logs"]["items"])["properties"])
    schedule = _ref(doc, _answer(doc, "/scheduler/jobs")["properties"]["jobs"]["items"])
    assert {"plugin", "schedule_id", "command", "mode", "status"} <= set(schedule["required"])
    assert {"reason", "timezone", "next_run_at"} <= set(schedule["properties"])

    # Analytics (§4.5, §4.6).
    summary = _answer(doc, "/analytics/summary")
    assert set(summary["required"]) == {"window", "captured_at", "stats"}
    assert set(_ref(doc, summary["properties"]["stats"])["required"]) == {"succeeded", "failed", "timed_out", "dead",
                                                                         "skipped"}
    queue = _answer(doc, "/analytics/queue")
    assert set(queue["required"]) == {"captured_at", "depth", "depth_total", "queued_by_plugin", "running_by_plugin",
                                      "oldest_queued_age_seconds", "workers"}
    assert set(_ref(doc, queue["properties"]["depth"])["required"]) == {"queued", "retry_wait", "running"}
    stopwatch = _answer(doc, "/stopwatch/{plugin}")
    assert set(stopwatch["required"]) == {"plugin", "window", "captured_at", "steps"}
    assert "subs_unavailable" in stopwatch["properties"]
    step = _ref(doc, stopwatch["properties"]["steps"]["items"])
    assert set(step["required"]) == {"step", "sample_count", "p50_ms", "p95_ms", "p99_ms", "trend_p95_ms"}

    # Health-like reports and the system views (§4.7, §4.8).
    assert set(_answer(doc, "/system/doctor")["required"]) == {"ok", "captured_at", "checks"}
    selfcheck = _answer(doc, "/system/selfcheck")
    assert set(selfcheck["required"]) == {"healthy", "captured_at", "checks"}
    assert set(_ref(doc, selfcheck["properties"]["checks"]["items"])["required"]) == {"name", "ok", "status"}
    topology = _answer(doc, "/topology")
    assert set(topology["required"]) == {"version", "captured_at", "plugins", "signals"}
    assert set(_ref(doc, topology["properties"]["plugins"]["items"])["required"]) == {"name", "active", "inputs",
                                                                                      "outputs"}
    view = _answer(doc, "/config/view")
    assert {"service", "state", "secrets", "plugin_roots", "api", "plugins", "pipelines", "webhooks", "instances",
            "remote_ingress", "compiled_routes"} == set(view["required"])

    # Discovery (§3, §4.1).
    plugin = _answer(doc, "/plugin/{plugin}")
    assert set(plugin["required"]) == {"name", "version", "protocol", "concurrency_safe", "commands"}
    command = _ref(doc, plugin["properties"]["commands"]["items"])
    assert set(command["required"]) == {"name", "type"}
    skill = _ref(doc, _answer(doc, "/skills")["properties"]["skills"]["items"])
    assert {"name", "kind", "endpoint"} <= set(skill["required"])
    assert {"tier", "plugin", "command", "pipeline", "trigger", "execution_mode", "timeout_secs"} <= set(skill["properties"])

    # The pipeline answers (pipelines.md §9): 200 finished with its tree, 202 queued or still running.
    finished = _answer(doc, "/pipeline/{name}", method="post")
    assert set(finished["required"]) == {"job_id", "status", "duration_ms", "tree"}
    accepted = doc["paths"]["/pipeline/{name}"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    shapes = [_ref(doc, s) for s in accepted["oneOf"]]
    assert [set(s["required"]) for s in shapes] == [{"job_id", "job_ids", "status", "plugin", "command"},
                                                    {"job_id", "status", "timeout_exceeded", "message"}]
