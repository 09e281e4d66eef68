"""Catalog, analytics, system, metrics and CORS routes of a real daemon (api.md §1, §3, §4, §6).

One daemon serves the module. Each concern uses its own plugin instance (``uses: behave``) so
counts never see another test's jobs; a second plugin root holds ``emitter``, whose manifest
declares ``values.emit`` and an ``input_schema``.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ductile.events.timefmt import NS, now_ns, parse_rfc3339
from tests.integration.daemon import TEST_PLUGINS, TOKEN, Daemon, call, error_of, seed_vault, wait_until
from tests.prometheus_text import parse_exposition

ORIGIN = "https://ui.example"
FAST = {"max_attempts": 1}
PLUGIN_SECRET = "plugin-api-key-value-1234"
PLUGINS = {
    "behave": {"enabled": True, "retry": FAST, "config": {"api_key": PLUGIN_SECRET, "region": "eu"}},
    "sw": {"enabled": True, "uses": "behave", "retry": FAST},  # stopwatch samples
    "lane": {"enabled": True, "uses": "behave", "parallelism": 1, "retry": FAST},  # queue: one runs, two wait
    "slow_retry": {"enabled": True, "uses": "behave", "retry": {"max_attempts": 2, "backoff_base": "1h"}},
    "treeish": {"enabled": True, "uses": "behave", "retry": FAST},  # job trees
    "counted": {"enabled": True, "uses": "behave", "retry": FAST},  # analytics counts
    "emitter": {"enabled": True},
    "parked": {"enabled": False, "uses": "behave"},
}
PIPELINES = [
    {"name": "on-thing", "on": "thing.happened", "steps": [{"uses": "behave"}, {"uses": "sw"}]},
    {"name": "fanout", "on": "thing.happened",
     "steps": [{"split": [{"uses": "emitter.handle"}, {"steps": [{"call": "sub"}]}]}]},
    {"name": "sub", "on": "other.signal", "steps": [{"uses": "treeish"}]},
]
TOKENS = {
    TOKEN: ["*"],
    "tok-catalog": ["plugin:catalog:ro"],
    "tok-plugin-ro": ["plugin:ro"],
    "tok-invoke": ["plugin:invoke:ro"],
    "tok-status": ["jobs:status:ro"],
    "tok-tree": ["jobs:tree:ro"],
    "tok-jobs-ro": ["jobs:ro"],
    "tok-system-ro": ["system:ro"],
    "tok-system-rw": ["system:rw"],
    "tok-none": [],
}
EMITTER_MANIFEST = """\
manifest_spec: ductile.plugin
manifest_version: 1
name: emitter
version: "2.0"
protocol: 2
entrypoint: run.sh
description: Emits things.
commands:
  - name: poll
    type: read
    description: Look for new things.
    values:
      emit:
        - event: thing.happened
          values: [payload.id]
        - event: thing.vanished
  - name: handle
    type: write
    idempotent: true
    input_schema: {id: string}
"""
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("routes")
    emitter = root / "plugins" / "emitter"
    emitter.mkdir(parents=True)
    (emitter / "manifest.yaml").write_text(EMITTER_MANIFEST)
    run = emitter / "run.sh"
    run.write_text("#!/bin/sh\ncat >/dev/null\necho '{\"status\":\"ok\",\"result\":\"emitted\"}'\n")
    run.chmod(0o755)
    tokens: list[dict[str, Any]] = [{"token": t, "scopes": s} for t, s in TOKENS.items()]
    tokens.append({"secret_ref": "dashboard-token", "scopes": ["jobs:ro"]})
    d = Daemon(root / "gw", PLUGINS, service={"shutdown_grace": "1s"}, tokens=tokens,
               plugin_roots=[str(TEST_PLUGINS), str(root / "plugins")])
    seed_vault(d.root, {"dashboard-token": "d" * 43})  # the secret_ref must resolve, or boot refuses
    d.config["api"]["allowed_origins"] = [ORIGIN]
    d.config["pipelines"] = PIPELINES
    d.write_config()
    d.start()
    yield d
    d.close()


def enqueue_child(gw: Daemon, plugin: str, payload: dict[str, Any], **lineage: Any) -> str:
    """Enqueue through the log from this process, with lineage the API does not take."""
    from ductile.app import jobs
    from ductile.commands.jobs import EnqueueJob
    from ductile.events.log import EventLog
    from ductile.projections.registry import default_runner

    cmd = EnqueueJob(job_id=str(uuid.uuid4()), plugin=plugin, command="poll", payload=payload, submitted_by="test",
                     max_attempts=1, **lineage)
    log = EventLog(gw.state_db, "full", default_runner()).open_sync()
    try:
        return log.submit_sync(lambda tx: jobs.enqueue(tx, cmd)).job_id
    finally:
        log.close()


# --- catalog (the scope matrix of every route is test_scope_matrix.py) -----------------------------


def test_plugin_describes_manifest_and_commands(gw: Daemon) -> None:
    body = call(gw, "GET", "/plugin/emitter").json()
    assert body == {
        "name": "emitter", "version": "2.0", "description": "Emits things.", "protocol": 2, "concurrency_safe": True,
        "commands": [
            {"name": "poll", "type": "read", "description": "Look for new things."},
            {"name": "handle", "type": "write", "idempotent": True,
             "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}}},
        ],
    }
    alias = call(gw, "GET", "/plugin/sw").json()
    assert alias["name"] == "sw" and [c["name"] for c in alias["commands"]] == ["poll", "handle", "custom_cmd"]


def test_unknown_or_disabled_plugin_is_404(gw: Daemon) -> None:
    for path in ("/plugin/nope", "/plugin/parked", "/plugin/nope/openapi.json", "/plugin/parked/openapi.json",
                 "/stopwatch/nope"):
        resp = call(gw, "GET", path)
        assert resp.status_code == 404, path
        assert error_of(resp) == "plugin not found"


def test_plugin_openapi_lists_each_command_as_a_post_operation(gw: Daemon) -> None:
    doc = call(gw, "GET", "/plugin/emitter/openapi.json", token="tok-none").json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "Ductile Gateway" and doc["info"]["version"]
    assert doc["components"]["securitySchemes"] == {"BearerAuth": {"type": "http", "scheme": "bearer"}}
    assert sorted(doc["paths"]) == ["/plugin/emitter/handle", "/plugin/emitter/poll"]
    poll = doc["paths"]["/plugin/emitter/poll"]["post"]
    handle = doc["paths"]["/plugin/emitter/handle"]["post"]
    assert poll["operationId"] == "emitter__poll" and poll["summary"] == "Look for new things."
    assert handle["operationId"] == "emitter__handle" and handle["summary"] == "emitter: handle"
    for op in (poll, handle):
        assert op["tags"] == ["emitter"]
        assert op["security"] == [{"BearerAuth": []}]
        assert sorted(op["responses"]) == ["202", "400", "401", "403", "413", "500"]
        assert all(r["description"] for r in op["responses"].values())
    assert "requestBody" not in poll
    schema = handle["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["payload"] == {"type": "object", "properties": {"id": {"type": "string"}}}
    refs = re.findall(r'"\$ref": ?"#/components/schemas/([A-Za-z]+)"', httpx.Response(200, json=doc).text)
    assert refs and set(refs) <= set(doc["components"]["schemas"])


def test_skills_lists_every_enabled_plugin_command_sorted(gw: Daemon) -> None:
    everything = call(gw, "GET", "/skills", token="tok-none").json()["skills"]
    skills = [s for s in everything if s["kind"] == "plugin"]
    assert everything[: len(skills)] == skills, "plugin entries come first, then pipelines"
    keys = [(s["plugin"], s["command"]) for s in skills]
    assert keys == sorted(keys)
    enabled = sorted(n for n, p in PLUGINS.items() if p["enabled"])
    assert sorted({p for p, _ in keys}) == enabled
    poll = next(s for s in skills if s["plugin"] == "emitter" and s["command"] == "poll")
    assert poll == {"name": "plugin.emitter.poll", "kind": "plugin", "description": "Look for new things.",
                    "endpoint": "/plugin/emitter/poll", "tier": "READ", "plugin": "emitter", "command": "poll"}
    handle = next(s for s in skills if s["plugin"] == "emitter" and s["command"] == "handle")
    assert handle["tier"] == "WRITE" and "description" not in handle


def test_ai_plugin_manifest(gw: Daemon) -> None:
    body = call(gw, "GET", "/.well-known/ai-plugin.json", token="tok-none").json()
    assert body.pop("description_for_human") and body.pop("description_for_model")
    assert body == {"schema_version": "v1", "name_for_human": "Ductile Gateway", "name_for_model": "ductile",
                    "auth": {"type": "bearer"}, "api": {"type": "openapi", "url": "/openapi.json"}}


# --- job tree ----------------------------------------------------------------------------------------

TREE_KEYS = {"job_id", "parent_job_id", "plugin", "command", "status", "pipeline", "step_id", "attempt", "created_at",
             "started_at", "completed_at", "result", "last_error"}


def test_job_tree_is_the_job_and_its_descendants_root_first_then_by_creation(gw: Daemon) -> None:
    root = gw.trigger("treeish", payload={"mode": "ok", "result": "root"})
    gw.wait_job(root)
    first = enqueue_child(gw, "treeish", {"mode": "ok"}, parent_job_id=root, pipeline="pl", step_id="a")
    second = enqueue_child(gw, "treeish", {"mode": "error_noretry"}, parent_job_id=root, pipeline="pl", step_id="b")
    grandchild = enqueue_child(gw, "treeish", {"mode": "ok"}, parent_job_id=first)
    for job_id in (first, second, grandchild):
        gw.wait_job(job_id)

    tree = call(gw, "GET", f"/job/{root}/tree").json()
    assert isinstance(tree, list)
    assert [n["job_id"] for n in tree] == [root, first, second, grandchild]
    assert [n["created_at"] for n in tree[1:]] == sorted(n["created_at"] for n in tree[1:])
    for node in tree:
        assert set(node) <= TREE_KEYS, node
        assert node["plugin"] == "treeish" and node["command"] == "poll"
        assert RFC3339.match(node["created_at"]) and RFC3339.match(node["completed_at"])
    assert "parent_job_id" not in tree[0]
    assert (tree[1]["parent_job_id"], tree[1]["pipeline"], tree[1]["step_id"]) == (root, "pl", "a")
    assert tree[3]["parent_job_id"] == first
    assert tree[0]["result"]["result"] == "root"
    assert tree[2]["status"] == "failed" and tree[2]["last_error"] == "permanent problem"

    subtree = call(gw, "GET", f"/job/{first}/tree").json()
    assert [n["job_id"] for n in subtree] == [first, grandchild]

    stripped = call(gw, "GET", f"/job/{root}/tree", token="tok-tree")
    assert stripped.status_code == 200
    assert all("result" not in n and "last_error" not in n for n in stripped.json())
    assert call(gw, "GET", f"/job/{root}/tree", token="tok-jobs-ro").json() == tree
    assert call(gw, "GET", f"/job/{root}/tree", token="tok-status").status_code == 403


def test_job_tree_of_an_unknown_job_is_404(gw: Daemon) -> None:
    resp = call(gw, "GET", f"/job/{uuid.uuid4()}/tree")
    assert resp.status_code == 404
    assert error_of(resp) == "job not found"


# --- analytics -------------------------------------------------------------------------------------


def _expected_partition(gw: Daemon, now: int) -> dict[str, Any]:
    with gw.db() as db:
        rows = db.execute(
            "SELECT plugin, status, next_retry_ns, created_ns FROM job_queue WHERE status IN ('queued','running')"
        ).fetchall()
    depth = {"queued": 0, "retry_wait": 0, "running": 0}
    queued: dict[str, int] = {}
    running: dict[str, int] = {}
    eligible_created = []
    for plugin, status, next_retry, created in rows:
        if status == "running":
            depth["running"] += 1
            running[plugin] = running.get(plugin, 0) + 1
        elif next_retry is not None and next_retry > now:
            depth["retry_wait"] += 1
        else:
            depth["queued"] += 1
            queued[plugin] = queued.get(plugin, 0) + 1
            eligible_created.append(created)
    return {"depth": depth, "queued_by_plugin": queued, "running_by_plugin": running,
            "oldest_created_ns": min(eligible_created) if eligible_created else None}


def test_analytics_queue_partitions_outstanding_jobs_as_the_queue_holds_them(gw: Daemon) -> None:
    waiting = gw.trigger("slow_retry", payload={"mode": "error"})
    gw.wait_job(waiting, {"queued"})
    wait_until(lambda: gw.job(waiting).get("next_retry_at"), what="retry scheduled")
    blocker = gw.trigger("lane", payload={"mode": "sleep", "seconds": 6})
    gw.wait_job(blocker, {"running"})
    behind = [gw.trigger("lane", payload={"mode": "ok"}) for _ in range(2)]
    time.sleep(0.2)  # the two stay queued behind the lane's single slot; age them a little

    before = now_ns()
    body = call(gw, "GET", "/analytics/queue", token="tok-status").json()
    expected = _expected_partition(gw, parse_rfc3339(body["captured_at"]))
    assert set(body) == {"captured_at", "depth", "depth_total", "queued_by_plugin", "running_by_plugin",
                         "oldest_queued_age_seconds", "workers"}
    assert RFC3339.match(body["captured_at"])
    assert body["depth"] == expected["depth"]
    assert body["depth_total"] == sum(expected["depth"].values())
    assert body["queued_by_plugin"] == expected["queued_by_plugin"]
    assert body["running_by_plugin"] == expected["running_by_plugin"]
    assert body["queued_by_plugin"]["lane"] == 2 and body["running_by_plugin"]["lane"] == 1
    assert body["depth"]["retry_wait"] >= 1 and "slow_retry" not in body["queued_by_plugin"]
    assert body["workers"] == {"busy": body["depth"]["running"], "total": 4}
    age = (before - expected["oldest_created_ns"]) / NS
    assert body["oldest_queued_age_seconds"] == pytest.approx(age, abs=0.5)
    assert body["oldest_queued_age_seconds"] >= 0.2
    for job_id in (blocker, *behind):
        gw.wait_job(job_id)


def test_analytics_summary_counts_terminal_jobs_of_the_last_day(gw: Daemon) -> None:
    for mode in ("ok", "error_noretry"):
        gw.wait_job(gw.trigger("counted", payload={"mode": mode}))

    def agrees() -> dict[str, Any] | None:
        body = call(gw, "GET", "/analytics/summary", token="tok-status").json()
        with gw.db() as db:
            stored = dict(db.execute("SELECT status, COUNT(*) FROM job_log GROUP BY status").fetchall())
        expected = {s: stored.get(s, 0) for s in ("succeeded", "failed", "timed_out", "dead", "skipped")}
        return body if body["stats"] == expected else None

    body = wait_until(agrees, 10, what="summary to match the ledger")
    assert body["window"] == "24h" and RFC3339.match(body["captured_at"])
    assert list(body["stats"]) == ["succeeded", "failed", "timed_out", "dead", "skipped"]
    assert body["stats"]["succeeded"] >= 1 and body["stats"]["failed"] >= 1


def _nearest_rank(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _attempt_ms(gw: Daemon, job_ids: list[str]) -> list[int]:
    with gw.db() as db:
        rows = db.execute(
            f"SELECT created_ns, completed_at FROM job_attempts WHERE job_id IN ({','.join('?' * len(job_ids))})",
            job_ids,
        ).fetchall()
    assert len(rows) == len(job_ids)
    return [(parse_rfc3339(done) - started) // 1_000_000 for started, done in rows]


def test_stopwatch_percentiles_are_nearest_rank_over_the_attempts_in_the_window(gw: Daemon) -> None:
    seconds = [0.05, 0.1, 0.15, 0.2, 0.3, 0.05, 0.4]
    ids = [gw.trigger("sw", payload={"mode": "sleep", "seconds": s}) for s in seconds]
    piped = enqueue_child(gw, "sw", {"mode": "ok"}, pipeline="pipe", step_id="first")
    for job_id in (*ids, piped):
        gw.wait_job(job_id)
    durations = _attempt_ms(gw, ids)

    body = call(gw, "GET", "/stopwatch/sw").json()
    assert set(body) == {"plugin", "window", "captured_at", "steps"}
    assert (body["plugin"], body["window"]) == ("sw", "1h")
    assert [s["step"] for s in body["steps"]] == ["pipe/first", "poll"]
    poll = body["steps"][1]
    assert set(poll) == {"step", "sample_count", "p50_ms", "p95_ms", "p99_ms", "trend_p95_ms"}
    assert poll["sample_count"] == len(seconds)
    assert (poll["p50_ms"], poll["p95_ms"], poll["p99_ms"]) == (
        _nearest_rank(durations, 50), _nearest_rank(durations, 95), _nearest_rank(durations, 99))
    assert poll["p50_ms"] >= 150  # the seeded sleeps really are in the samples
    # Every sample ended within the last minute: the newest of the six 10-minute slices.
    assert poll["trend_p95_ms"] == [0, 0, 0, 0, 0, poll["p95_ms"]]
    assert body["steps"][0]["sample_count"] == 1

    for window in ("5m", "24h"):
        other = call(gw, "GET", f"/stopwatch/sw?window={window}").json()
        assert other["window"] == window and other["steps"][1]["sample_count"] == len(seconds)


def test_stopwatch_subs_follow_include_subs_and_the_result_scope(gw: Daemon) -> None:
    gw.wait_job(gw.trigger("sw", payload={"mode": "ok"}))
    with_subs = call(gw, "GET", "/stopwatch/sw?include_subs=true").json()
    assert all(s["subs"] == [] for s in with_subs["steps"]) and "subs_unavailable" not in with_subs
    plain = call(gw, "GET", "/stopwatch/sw").json()
    assert all("subs" not in s for s in plain["steps"]) and "subs_unavailable" not in plain
    refused = call(gw, "GET", "/stopwatch/sw?include_subs=true", token="tok-status").json()
    assert refused["subs_unavailable"] == "insufficient_scope"
    assert refused["steps"] and all("subs" not in s for s in refused["steps"])
    assert "subs_unavailable" not in call(gw, "GET", "/stopwatch/sw", token="tok-jobs-ro").json()


def test_stopwatch_rejects_an_unknown_window(gw: Daemon) -> None:
    for window in ("2h", "1d", "", "1H"):
        resp = call(gw, "GET", f"/stopwatch/sw?window={window}")
        if window == "":
            assert resp.status_code == 200  # empty means the default
            continue
        assert resp.status_code == 400, window
        assert error_of(resp) == "invalid window (use 5m, 1h, or 24h)"


# --- topology, config view, doctor, selfcheck, reload ----------------------------------------------------


def test_topology_joins_manifest_emits_to_pipeline_entry_steps(gw: Daemon) -> None:
    body = call(gw, "GET", "/topology", token="tok-system-ro").json()
    assert set(body) == {"version", "captured_at", "plugins", "signals"}
    names = [p["name"] for p in body["plugins"]]
    assert names == sorted(PLUGINS)
    by_name = {p["name"]: p for p in body["plugins"]}
    assert by_name["parked"]["active"] is False and "version" not in by_name["parked"]
    assert by_name["emitter"] == {
        "name": "emitter", "version": "2.0", "active": True,
        "inputs": [{"signal": "thing.happened", "command": "handle"}],
        "outputs": [{"signal": "thing.happened", "command": "poll"}, {"signal": "thing.vanished", "command": "poll"}],
    }
    assert by_name["behave"]["inputs"] == [{"signal": "thing.happened", "command": "handle"}]
    assert by_name["sw"]["inputs"] == []  # second step of on-thing, not an entry
    assert by_name["treeish"]["inputs"] == [{"signal": "other.signal", "command": "handle"},
                                            {"signal": "thing.happened", "command": "handle"}]
    assert body["signals"] == [
        {"name": "other.signal", "producers": [], "consumers": [{"plugin": "treeish", "command": "handle"}]},
        {"name": "thing.happened", "producers": [{"plugin": "emitter", "command": "poll"}],
         "consumers": [{"plugin": "behave", "command": "handle"}, {"plugin": "emitter", "command": "handle"},
                       {"plugin": "treeish", "command": "handle"}]},
        {"name": "thing.vanished", "producers": [{"plugin": "emitter", "command": "poll"}], "consumers": []},
    ]


def test_config_view_redacts_secrets_and_never_shows_a_token(gw: Daemon) -> None:
    resp = call(gw, "GET", "/config/view", token="tok-system-ro")
    body = resp.json()
    for token in TOKENS:
        assert token not in resp.text, token
    assert PLUGIN_SECRET not in resp.text
    assert body["plugins"]["behave"]["config"] == {"api_key": "[REDACTED]", "region": "eu"}
    assert body["plugins"]["behave"]["enabled"] is True
    assert body["plugins"]["parked"] == {"enabled": False, "uses": "behave"}
    assert body["plugins"]["slow_retry"]["retry"] == {"max_attempts": 2, "backoff_base": "1h"}
    tokens = body["api"]["auth"]["tokens"]
    assert tokens[-1] == {"secret_ref": "dashboard-token", "scopes": ["jobs:ro"]}
    assert tokens[:-1] == [{"scopes": s} for s in TOKENS.values()]
    assert body["service"]["shutdown_grace"] == "1s"  # durations as written
    assert body["api"]["allowed_origins"] == [ORIGIN]
    assert [p["name"] for p in body["pipelines"]] == [p["name"] for p in PIPELINES]
    for key in ("service", "state", "secrets", "plugin_roots", "api", "plugins", "pipelines", "webhooks", "instances",
                "remote_ingress", "compiled_routes"):
        assert key in body, key


def test_doctor_reports_checks_with_the_documented_keys(gw: Daemon) -> None:
    body = call(gw, "GET", "/system/doctor", token="tok-system-ro").json()
    assert set(body) == {"ok", "captured_at", "checks"} and RFC3339.match(body["captured_at"])
    assert body["ok"] is True
    for check in body["checks"]:
        assert set(check) <= {"name", "ok", "severity", "detail", "field"}, check
        assert check.get("severity", "warning") in ("error", "warning")
    names = {c["name"] for c in body["checks"]}
    assert {"state_db", "plugins"} <= names
    literal = [c for c in body["checks"] if "literal token" in c.get("detail", "")]
    assert literal and all(c["severity"] == "warning" for c in literal)


def test_selfcheck_passes_on_a_healthy_gateway(gw: Daemon) -> None:
    body = call(gw, "GET", "/system/selfcheck", token="tok-system-ro").json()
    assert set(body) == {"healthy", "captured_at", "checks"}
    assert body["healthy"] is True, body
    assert [c["name"] for c in body["checks"]] == [
        "event_log_chain", "projection_replay", "queue_terminal_freshness", "vault_agreement"]
    for check in body["checks"]:
        assert check["ok"] is True and check["status"] == "ok"
        assert set(check) <= {"name", "ok", "status", "detail"}


def test_reload_of_an_unchanged_config_answers_ok(gw: Daemon) -> None:
    resp = call(gw, "POST", "/system/reload", token="tok-system-rw")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["message"]) == ("ok", "configuration reloaded")


# --- metrics ---------------------------------------------------------------------------------------


# The whole exposition, after real work, is read by tests/integration/test_metrics_scrape.py.


def test_metrics_event_log_position_follows_the_log(gw: Daemon) -> None:
    _, samples = parse_exposition(call(gw, "GET", "/metrics").text)
    with gw.db() as db:
        head = db.execute("SELECT MAX(position) FROM events").fetchone()[0]
    assert samples["ductile_event_log_position"] == head


# --- CORS ------------------------------------------------------------------------------------------

CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-expose-headers",
                "access-control-allow-methods", "access-control-allow-headers", "access-control-max-age")


def test_an_allowed_origin_gets_the_credential_headers(gw: Daemon) -> None:
    for path, status in (("/healthz", 200), ("/jobs", 200), ("/nope", 404)):
        resp = call(gw, "GET", path, headers={"Origin": ORIGIN})
        assert resp.status_code == status
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        assert resp.headers["access-control-allow-credentials"] == "true"
        assert resp.headers["access-control-expose-headers"] == "Link"
        assert "Origin" in resp.headers["vary"]


def test_a_preflight_from_an_allowed_origin_is_204_with_the_listed_headers(gw: Daemon) -> None:
    resp = call(gw, "OPTIONS", "/plugin/behave/poll", token=None,
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert resp.status_code == 204
    assert resp.content == b""
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert resp.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
    assert resp.headers["access-control-allow-headers"] == "Accept, Authorization, Content-Type, X-CSRF-Token"
    assert resp.headers["access-control-max-age"] == "300"


def test_other_origins_get_no_cors_headers_and_are_served_normally(gw: Daemon) -> None:
    resp = call(gw, "GET", "/jobs", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]
    pre = call(gw, "OPTIONS", "/jobs", token=None,
               headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert not [h for h in pre.headers if h.lower().startswith("access-control-")]
    plain = call(gw, "GET", "/healthz")
    assert not [h for h in plain.headers if h.lower().startswith("access-control-")]


def test_a_wildcard_origin_gets_a_wildcard_and_no_credentials(gateway: Any) -> None:
    d = gateway({"shellok": {"enabled": True}}, start=False)
    d.config["api"]["allowed_origins"] = ["*"]
    d.write_config()
    d.start()
    resp = d.client.get("/jobs", headers={"Origin": "https://anything.example"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    pre = httpx.options(d.url + "/jobs", headers={"Origin": "https://anything.example",
                                                  "Access-Control-Request-Method": "DELETE"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in pre.headers
    assert pre.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
