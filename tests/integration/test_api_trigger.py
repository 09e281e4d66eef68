"""The HTTP API of a real daemon: auth, scopes, the direct trigger, job reads (api.md §1–§4).

One daemon serves the whole module (starting one per test would dominate the runtime). Each
concern uses its own plugin instance (``uses: behave``), so counts and orderings never see
another test's jobs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import TOKEN, Daemon, call, error_of, wait_until

FAST = {"max_attempts": 1}
PLUGINS = {
    "behave": {"enabled": True, "retry": FAST},
    "trig": {"enabled": True, "uses": "behave", "retry": FAST},  # trigger tests count its jobs
    "listing": {"enabled": True, "uses": "behave", "retry": FAST},  # /jobs and /job-logs tests
    "lane": {"enabled": True, "uses": "behave", "parallelism": 1, "retry": FAST},  # holds a job running
    "shellok": {"enabled": False},  # discovered and configured, but disabled
}
ENABLED = ["behave", "lane", "listing", "trig"]
# name -> scopes; TOKEN ("*") is the harness client's own token.
TOKENS = {
    TOKEN: ["*"],
    "tok-invoke": ["plugin:invoke:ro"],
    "tok-plugin-rw": ["plugin:rw"],
    "tok-plugin-ro": ["plugin:ro"],
    "tok-status": ["jobs:status:ro"],
    "tok-logs": ["jobs:logs:ro"],
    "tok-jobs-ro": ["jobs:ro"],
    "tok-jobs-rw": ["jobs:rw"],
    "tok-none": [],
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JOB_KEYS = {"job_id", "status", "plugin", "command", "submitted_by", "attempt", "max_attempts", "parent_job_id",
            "pipeline", "step_id", "created_at", "started_at", "completed_at", "next_retry_at", "result", "last_error"}
LOG_KEYS = {"job_id", "log_id", "plugin", "command", "status", "attempt", "submitted_by", "created_at",
            "completed_at", "last_error", "stderr", "result"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("api") / "gw", PLUGINS, service={"shutdown_grace": "1s"},
               tokens=[{"token": t, "scopes": s} for t, s in TOKENS.items()])
    d.start()
    yield d
    d.close()


@pytest.fixture(scope="module")
def finished(gw: Daemon) -> dict[str, str]:
    """Terminal jobs every read test can look at: one success, one failure, one with stderr."""
    ids = {
        "ok": gw.trigger("behave", payload={"mode": "ok", "result": "fine result"}),
        "failed": gw.trigger("behave", payload={"mode": "error_noretry"}),
        "stderr": gw.trigger("behave", payload={"mode": "bigerr"}),
    }
    for job_id in ids.values():
        gw.wait_job(job_id)
    return ids


def jobs_of(gw: Daemon, plugin: str) -> int:
    with gw.db() as db:
        return db.execute("SELECT COUNT(*) FROM job_queue WHERE plugin=?", (plugin,)).fetchone()[0]


# --- authentication (api.md §2.1) ------------------------------------------------------------------

PROTECTED = [("GET", "/jobs"), ("GET", "/job/00000000-0000-0000-0000-000000000000"), ("GET", "/job-logs"),
             ("GET", "/plugins"), ("POST", "/plugin/behave/poll")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_route_answers_401_with_the_exact_message_and_www_authenticate(
    gw: Daemon, method: str, path: str
) -> None:
    cases = [
        ({}, "missing or invalid Authorization header"),
        ({"Authorization": ""}, "missing or invalid Authorization header"),
        ({"Authorization": "Basic x"}, "invalid Authorization header format"),
        ({"Authorization": "Token abc"}, "invalid Authorization header format"),
        ({"Authorization": "Bearer not-a-configured-token"}, "invalid token"),
    ]
    for headers, message in cases:
        resp = call(gw, method, path, token=None, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert error_of(resp) == message, headers
        assert resp.headers["www-authenticate"] == "Bearer", headers


def test_bearer_with_an_empty_token_is_missing_not_malformed(gw: Daemon) -> None:
    for value in ("Bearer ", "Bearer    "):
        resp = gw.raw_request("GET", "/jobs", [("Authorization", value)])
        assert resp.status == 401
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json() == {"error": "missing or invalid Authorization header"}, value


def test_bearer_scheme_is_case_insensitive_and_the_token_is_trimmed(gw: Daemon) -> None:
    for value in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer   {TOKEN}"):
        resp = call(gw, "GET", "/jobs", token=None, headers={"Authorization": value})
        assert resp.status_code == 200, (value, resp.text)


def test_a_token_in_the_query_string_is_not_accepted_outside_events(gw: Daemon) -> None:
    for path in ("/jobs", "/job-logs", "/plugins"):
        resp = call(gw, "GET", path, token=None, params={"token": TOKEN})
        assert resp.status_code == 401, path
        assert error_of(resp) == "missing or invalid Authorization header"
        assert resp.headers["www-authenticate"] == "Bearer"


def test_root_and_healthz_are_open(gw: Daemon) -> None:
    for path in ("/", "/healthz"):
        assert call(gw, "GET", path, token=None).status_code == 200, path
        assert call(gw, "GET", path, token="not-a-token").status_code == 200, path


# --- scopes (api.md §2.2, §3) --------------------------------------------------------------------

OK, NO = "ok", 403
# token -> expected outcome per route: read trigger, write trigger, /job/{id}, /jobs, /job-logs,
# /job-logs?query=, /plugins
MATRIX = {
    TOKEN: (OK, OK, OK, OK, OK, OK, OK),
    "tok-invoke": (OK, NO, NO, NO, NO, NO, OK),
    "tok-plugin-rw": (OK, OK, NO, NO, NO, NO, OK),
    "tok-plugin-ro": (NO, NO, NO, NO, NO, NO, OK),
    "tok-status": (NO, NO, OK, OK, NO, NO, OK),
    "tok-logs": (NO, NO, NO, NO, OK, NO, OK),
    "tok-jobs-ro": (NO, NO, OK, OK, OK, OK, OK),
    "tok-jobs-rw": (NO, NO, OK, OK, OK, OK, OK),
    "tok-none": (NO, NO, NO, NO, NO, NO, OK),
}


@pytest.mark.parametrize("token", list(MATRIX))
def test_route_scope_matrix(gw: Daemon, finished: dict[str, str], token: str) -> None:
    requests = [
        ("POST", "/plugin/trig/poll", {}),  # manifest type read
        ("POST", "/plugin/trig/custom_cmd", {}),  # manifest type write
        ("GET", f"/job/{finished['ok']}", {}),
        ("GET", "/jobs", {}),
        ("GET", "/job-logs", {}),
        ("GET", "/job-logs", {"params": {"query": "fine"}}),
        ("GET", "/plugins", {}),
    ]
    got = []
    for method, path, kw in requests:
        resp = call(gw, method, path, token=token, **kw)
        if resp.status_code == 403:
            assert error_of(resp) == "insufficient scope"
            got.append(NO)
        else:
            assert resp.status_code in (200, 202), (method, path, resp.text)
            assert resp.status_code == (202 if method == "POST" else 200)
            got.append(OK)
    assert tuple(got) == MATRIX[token]


def test_without_jobs_result_ro_results_errors_and_stderr_are_stripped_not_refused(
    gw: Daemon, finished: dict[str, str]
) -> None:
    for job_id in finished.values():
        full = call(gw, "GET", f"/job/{job_id}").json()
        limited = call(gw, "GET", f"/job/{job_id}", token="tok-status").json()
        assert "result" not in limited and "last_error" not in limited
        assert {k: v for k, v in full.items() if k not in ("result", "last_error")} == limited
        via_jobs_ro = call(gw, "GET", f"/job/{job_id}", token="tok-jobs-ro").json()
        assert via_jobs_ro == full, "jobs:ro implies jobs:result:ro"
    assert call(gw, "GET", f"/job/{finished['ok']}").json()["result"]["result"] == "fine result"
    assert call(gw, "GET", f"/job/{finished['failed']}").json()["last_error"] == "permanent problem"

    params = {"plugin": "behave", "include_result": "true"}
    full_logs = call(gw, "GET", "/job-logs", params=params).json()["logs"]
    limited_logs = call(gw, "GET", "/job-logs", token="tok-logs", params=params).json()["logs"]
    assert len(full_logs) == len(limited_logs) >= 3
    assert any("stderr" in e for e in full_logs) and any("last_error" in e for e in full_logs)
    assert all("result" in e for e in full_logs)
    for entry in limited_logs:
        assert not {"result", "last_error", "stderr"} & set(entry), entry
    resp = call(gw, "GET", "/job-logs", token="tok-logs", params={"query": "problem"})
    assert resp.status_code == 403 and error_of(resp) == "insufficient scope"
    found = call(gw, "GET", "/job-logs", params={"query": "PERMANENT"}).json()
    assert [e["job_id"] for e in found["logs"]] == [finished["failed"]]


# --- the direct trigger (api.md §3, jobs.md §3) --------------------------------------------------

def test_trigger_errors_are_checked_in_the_documented_order(gw: Daemon) -> None:
    before = jobs_of(gw, "trig")
    cases = [
        # route scope first, even for an unknown plugin
        ("tok-none", "/plugin/nope/poll", b"[1]", 403, "insufficient scope"),
        ("tok-plugin-ro", "/plugin/trig/poll", b"", 403, "insufficient scope"),
        # then the plugin, before the command, the write scope and the body
        ("tok-invoke", "/plugin/nope/custom_cmd", b"not json", 400, "plugin not found"),
        (TOKEN, "/plugin/nope/poll", b"", 400, "plugin not found"),
        (TOKEN, "/plugin/shellok/poll", b"", 400, "plugin not found"),  # configured, enabled: false
        (TOKEN, "/plugin/catlike/poll", b"", 400, "plugin not found"),  # discovered, not configured
        # then the command, before the write scope and the body
        ("tok-invoke", "/plugin/trig/zzz", b"[1]", 400, "command not supported by plugin"),
        (TOKEN, "/plugin/trig/health", b"", 400, "command not supported by plugin"),
        # then the write scope, before the body
        ("tok-invoke", "/plugin/trig/custom_cmd", b"[1]", 403, "insufficient scope"),
        # then the body
        (TOKEN, "/plugin/trig/poll", b"[1]", 400, "invalid JSON body"),
        (TOKEN, "/plugin/trig/poll", b"not json", 400, "invalid JSON body"),
        (TOKEN, "/plugin/trig/poll", b'"text"', 400, "invalid JSON body"),
        (TOKEN, "/plugin/trig/poll", b'{"payload": 5}', 400, "payload must be a JSON object"),
        (TOKEN, "/plugin/trig/poll", b'{"payload": [1]}', 400, "payload must be a JSON object"),
        (TOKEN, "/plugin/trig/poll", b'{"payload": "x"}', 400, "payload must be a JSON object"),
    ]
    for token, path, body, status, message in cases:
        resp = call(gw, "POST", path, token=token, content=body, headers={"Content-Type": "application/json"})
        assert (resp.status_code, error_of(resp)) == (status, message), (token, path, body)
    assert jobs_of(gw, "trig") == before, "a refused trigger must not enqueue anything"


def test_a_trigger_queues_exactly_one_job_and_answers_202_with_four_keys(gw: Daemon) -> None:
    before = jobs_of(gw, "trig")
    resp = call(gw, "POST", "/plugin/trig/poll", json={"payload": {"mode": "ok", "result": "r1"}})
    assert resp.status_code == 202
    body = resp.json()
    assert list(body) == ["job_id", "status", "plugin", "command"]
    assert body["status"] == "queued" and body["plugin"] == "trig" and body["command"] == "poll"
    assert UUID.match(body["job_id"]), body
    assert jobs_of(gw, "trig") == before + 1
    job = gw.wait_job(body["job_id"])
    assert job["submitted_by"] == "api"
    assert job["status"] == "succeeded" and job["result"]["result"] == "r1"


def test_an_empty_body_or_missing_payload_means_an_empty_object(gw: Daemon) -> None:
    ids = []
    for body in (b"", b"   ", b"{}", b'{"payload": null}'):
        resp = call(gw, "POST", "/plugin/trig/poll", content=body)
        assert resp.status_code == 202, (body, resp.text)
        ids.append(resp.json()["job_id"])
    with gw.db() as db:
        payloads = [db.execute("SELECT payload FROM job_queue WHERE job_id=?", (i,)).fetchone()[0] for i in ids]
    assert payloads == ["{}"] * len(ids)


def test_a_chunked_body_is_decoded_and_a_body_over_ten_mebibytes_is_413(gw: Daemon) -> None:
    def chunks(parts: list[bytes]) -> Iterator[bytes]:
        yield from parts

    resp = call(gw, "POST", "/plugin/trig/poll", content=chunks([b'{"payload": ', b'{"mode": "ok", "result": "chunked"}}']))
    assert resp.status_code == 202, resp.text
    assert gw.wait_job(resp.json()["job_id"])["result"]["result"] == "chunked"
    before = jobs_of(gw, "trig")
    big = b'{"payload": {"x": "' + b"a" * (10 * 1024 * 1024) + b'"}}'
    for content in (big, chunks([big[i : i + (1 << 20)] for i in range(0, len(big), 1 << 20)])):
        resp = call(gw, "POST", "/plugin/trig/poll", content=content)
        assert (resp.status_code, error_of(resp)) == (413, "request body too large")
    assert jobs_of(gw, "trig") == before


def test_a_write_command_runs_with_plugin_rw(gw: Daemon) -> None:
    resp = call(gw, "POST", "/plugin/trig/custom_cmd", token="tok-plugin-rw", json={"payload": {"mode": "ok"}})
    assert resp.status_code == 202
    job = gw.wait_job(resp.json()["job_id"])
    assert (job["command"], job["status"]) == ("custom_cmd", "succeeded")


# --- errors, request ids, access log (api.md §1) ------------------------------------------------

def test_unknown_routes_and_wrong_methods_answer_json(gw: Daemon) -> None:
    for path in ("/nope", "/job", "/plugin/behave/poll/extra", "/jobs/extra/segments"):
        resp = call(gw, "GET", path)
        assert resp.status_code == 404, path
        assert resp.json() == {"error": "not found"}
        assert resp.headers["content-type"].startswith("application/json")
    for method, path, allowed in (("DELETE", "/jobs", "GET"), ("POST", "/healthz", "GET"),
                                  ("GET", "/plugin/behave/poll", "POST"), ("PUT", "/job-logs", "GET")):
        resp = call(gw, method, path)
        assert resp.status_code == 405, (method, path)
        assert resp.json() == {"error": "method not allowed"}
        assert resp.headers["content-type"].startswith("application/json")
        assert allowed in [m.strip() for m in resp.headers["allow"].split(",")], resp.headers


def test_request_id_is_echoed_or_generated(gw: Daemon) -> None:
    for method, path, token in (("GET", "/healthz", None), ("GET", "/jobs", TOKEN), ("GET", "/jobs", None),
                                ("POST", "/plugin/nope/poll", TOKEN)):
        rid = f"rid-{uuid.uuid4()}"
        resp = call(gw, method, path, token=token, headers={"X-Request-ID": rid})
        assert resp.headers["x-request-id"] == rid, (method, path, resp.status_code)
        generated = call(gw, method, path, token=token).headers.get("x-request-id")
        assert generated and generated != rid


def _access_line(gw: Daemon, rid: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((line for line in gw.log_lines()
                     if line.get("msg") == "http request" and line.get("request_id") == rid), None)

    return wait_until(find, 10, what=f"http request log line for {rid}")


def test_each_request_logs_one_http_request_line(gw: Daemon) -> None:
    for method, path, params, status in (("GET", "/jobs", {"token": "secret-in-query"}, 200),
                                         ("POST", "/plugin/trig/zzz", {}, 400)):
        rid = f"rid-{uuid.uuid4()}"
        resp = call(gw, method, path, headers={"X-Request-ID": rid}, params=params)
        assert resp.status_code == status
        line = _access_line(gw, rid)
        assert line["level"] == "INFO" and line["component"] == "api"
        assert (line["method"], line["path"], line["status"]) == (method, path, status)
        assert isinstance(line["duration_ms"], int) and line["duration_ms"] >= 0
        assert sum(1 for x in gw.log_lines() if x.get("request_id") == rid and x.get("msg") == "http request") == 1
    assert "secret-in-query" not in gw.log_text(), "query tokens must never be logged"


def test_unrouted_requests_also_get_a_request_id_and_an_access_log_line(gw: Daemon) -> None:
    for method, path, status in (("GET", "/nope", 404), ("DELETE", "/jobs", 405)):
        rid = f"rid-{uuid.uuid4()}"
        resp = call(gw, method, path, headers={"X-Request-ID": rid})
        assert resp.status_code == status
        assert resp.headers.get("x-request-id") == rid
        line = _access_line(gw, rid)
        assert (line["method"], line["path"], line["status"]) == (method, path, status)


# --- /plugins, /, /healthz ---------------------------------------------------------------------

def test_plugins_lists_enabled_plugins_and_instances_sorted_by_name(gw: Daemon) -> None:
    plugins = call(gw, "GET", "/plugins", token="tok-none").json()["plugins"]
    assert [p["name"] for p in plugins] == ENABLED
    for p in plugins:
        assert set(p) <= {"name", "version", "description", "commands"}
        assert p["version"] == "0.1"
        assert p["commands"] == ["poll", "handle", "custom_cmd"]


def test_root_describes_the_gateway(gw: Daemon) -> None:
    body = call(gw, "GET", "/", token=None).json()
    assert set(body) == {"name", "description", "version", "uptime_seconds", "discovery"}
    assert body["name"] == "Ductile Gateway"
    assert body["discovery"] == {"health": "/healthz", "skills": "/skills", "plugins": "/plugins",
                                 "openapi": "/openapi.json", "ai_plugin": "/.well-known/ai-plugin.json"}


def test_healthz_reports_the_documented_keys(gw: Daemon) -> None:
    body = call(gw, "GET", "/healthz", token=None).json()
    assert set(body) == {"status", "uptime_seconds", "queue_depth", "plugins_loaded", "plugins_circuit_open",
                         "config_path", "binary_path", "version", "posture", "event_log_position", "scheduler"}
    assert body["status"] == "ok"
    assert body["posture"] == "gateway"
    assert body["plugins_loaded"] == len(ENABLED)
    assert body["plugins_circuit_open"] == 0
    assert Path(body["config_path"]) == gw.root / "config.yaml"
    assert isinstance(body["queue_depth"], int) and isinstance(body["uptime_seconds"], int)
    with gw.db() as db:
        assert body["event_log_position"] <= db.execute("SELECT MAX(position) FROM events").fetchone()[0]
    assert body["event_log_position"] > 0


# --- /job, /jobs, /job-logs -------------------------------------------------------------------

def test_unknown_job_is_404(gw: Daemon) -> None:
    resp = call(gw, "GET", f"/job/{uuid.uuid4()}")
    assert resp.status_code == 404 and error_of(resp) == "job not found"


def test_job_object_has_the_documented_fields(gw: Daemon, finished: dict[str, str]) -> None:
    job = call(gw, "GET", f"/job/{finished['ok']}").json()
    assert set(job) <= JOB_KEYS, set(job) - JOB_KEYS
    assert {"job_id", "status", "plugin", "command", "submitted_by", "attempt", "max_attempts", "created_at",
            "started_at", "completed_at", "result"} <= set(job)
    for key in ("created_at", "started_at", "completed_at"):
        assert RFC3339.match(job[key]), job[key]
    assert job["result"]["status"] == "ok"


@pytest.fixture(scope="module")
def listing(gw: Daemon) -> list[str]:
    """Four terminal jobs of ``listing``, in trigger order: ok, failed, ok, failed."""
    ids = []
    for mode in ("ok", "error_noretry", "ok", "error_noretry"):
        job_id = gw.trigger("listing", payload={"mode": mode})
        gw.wait_job(job_id)  # one at a time: created_at and completed_at follow trigger order
        ids.append(job_id)
    return ids


def test_jobs_lists_newest_first_and_total_counts_every_match(gw: Daemon, listing: list[str]) -> None:
    body = call(gw, "GET", "/jobs", params={"plugin": "listing"}).json()
    assert set(body) == {"jobs", "total"}
    assert body["total"] == 4
    assert [j["job_id"] for j in body["jobs"]] == listing[::-1]
    for j in body["jobs"]:
        assert set(j) <= {"job_id", "plugin", "command", "status", "submitted_by", "attempt", "created_at",
                          "started_at", "completed_at"}
        assert j["submitted_by"] == "api"
    one = call(gw, "GET", "/jobs", params={"plugin": "listing", "limit": "1"}).json()
    assert one["total"] == 4 and [j["job_id"] for j in one["jobs"]] == [listing[-1]]
    assert call(gw, "GET", "/jobs", params={"plugin": "listing", "limit": "200"}).status_code == 200


def test_jobs_status_filter_and_aliases(gw: Daemon, listing: list[str]) -> None:
    def ids(**params: str) -> list[str]:
        resp = call(gw, "GET", "/jobs", params={"plugin": "listing", **params})
        assert resp.status_code == 200, resp.text
        return [j["job_id"] for j in resp.json()["jobs"]]

    ok = [listing[2], listing[0]]
    failed = [listing[3], listing[1]]
    assert ids(status="succeeded") == ids(status="ok") == ok
    assert ids(status="failed") == ids(status="error") == failed
    assert ids(status="queued") == ids(status="pending") == []
    assert ids(command="poll") == listing[::-1]
    assert ids(command="handle") == []
    assert ids(submitted_by="api") == listing[::-1]
    assert ids(submitted_by="scheduler") == []


def test_pending_alias_and_queue_depth_see_outstanding_jobs(gw: Daemon) -> None:
    running = gw.trigger("lane", payload={"mode": "sleep", "seconds": 20})
    gw.wait_job(running, {"running"})
    queued = gw.trigger("lane", payload={"mode": "ok"})  # the lane (parallelism 1) is full

    def ids(status: str) -> list[str]:
        return [j["job_id"] for j in call(gw, "GET", "/jobs", params={"plugin": "lane", "status": status}).json()["jobs"]]

    assert ids("pending") == ids("queued") == [queued]
    assert ids("running") == [running]
    # Everything else this module started is terminal by now, or soon: depth counts exactly these two.
    wait_until(lambda: call(gw, "GET", "/healthz", token=None).json()["queue_depth"] == 2, 15,
               what="queue_depth == 2 (one running, one queued)")


@pytest.mark.parametrize("route", ["/jobs", "/job-logs"])
def test_limit_and_status_are_validated(gw: Daemon, route: str) -> None:
    for value, message in (("0", "limit must be a positive integer"), ("-3", "limit must be a positive integer"),
                           ("abc", "limit must be a positive integer"), ("1.5", "limit must be a positive integer"),
                           ("201", "limit must be <= 200")):
        resp = call(gw, "GET", route, params={"limit": value})
        assert (resp.status_code, error_of(resp)) == (400, message), value
    for value in ("bogus", "done", "cancelled"):
        resp = call(gw, "GET", route, params={"status": value})
        assert (resp.status_code, error_of(resp)) == (400, "invalid status filter"), value


def test_job_logs_shape_order_and_include_result(gw: Daemon, listing: list[str]) -> None:
    body = call(gw, "GET", "/job-logs", params={"plugin": "listing"}).json()
    assert set(body) == {"logs", "total"} and body["total"] == 4
    logs = body["logs"]
    assert [e["job_id"] for e in logs] == listing[::-1], "newest completed_at first"
    for e in logs:
        assert set(e) <= LOG_KEYS, set(e) - LOG_KEYS
        assert e["log_id"] == f"{e['job_id']}-{e['attempt']}"
        assert "result" not in e
        assert RFC3339.match(e["completed_at"]) and RFC3339.match(e["created_at"])
        assert ("last_error" in e) == (e["status"] == "failed")
    for flag in ("true", "TRUE", "True"):
        with_result = call(gw, "GET", "/job-logs", params={"plugin": "listing", "include_result": flag}).json()["logs"]
        assert all(e["result"]["status"] in ("ok", "error") for e in with_result), flag
    assert "result" not in call(gw, "GET", "/job-logs", params={"plugin": "listing", "include_result": "1"}).json()["logs"][0]
    one = call(gw, "GET", "/job-logs", params={"job_id": listing[1]}).json()
    assert one["total"] == 1 and one["logs"][0]["last_error"] == "permanent problem"
    assert call(gw, "GET", "/job-logs", params={"plugin": "listing", "status": "error"}).json()["total"] == 2


def test_job_logs_time_bounds_are_inclusive_and_validated(gw: Daemon, listing: list[str]) -> None:
    logs = call(gw, "GET", "/job-logs", params={"plugin": "listing"}).json()["logs"]
    second_oldest = logs[2]  # completed second
    frm = call(gw, "GET", "/job-logs", params={"plugin": "listing", "from": second_oldest["completed_at"]}).json()
    assert [e["job_id"] for e in frm["logs"]] == listing[:0:-1] and frm["total"] == 3
    to = call(gw, "GET", "/job-logs", params={"plugin": "listing", "to": second_oldest["completed_at"]}).json()
    assert [e["job_id"] for e in to["logs"]] == [listing[1], listing[0]]
    both = call(gw, "GET", "/job-logs", params={"plugin": "listing", "from": second_oldest["completed_at"],
                                                "to": second_oldest["completed_at"]}).json()
    assert [e["job_id"] for e in both["logs"]] == [listing[1]]
    future = call(gw, "GET", "/job-logs", params={"plugin": "listing", "from": "2999-01-01T00:00:00Z"}).json()
    assert future == {"logs": [], "total": 0}
    for name in ("from", "to"):
        for bad in ("bogus", "2026-13-01T00:00:00Z", "yesterday"):
            resp = call(gw, "GET", "/job-logs", params={name: bad})
            assert (resp.status_code, error_of(resp)) == (400, f"invalid {name} timestamp"), (name, bad)
