"""Pipeline validation at boot against the real daemon (pipelines.md §2, §3.1).

Load errors refuse boot with exit 1, every error on its own stderr line; a pipeline using a
disabled plugin is logged at ERROR and left out while the rest compile; compiled pipelines appear
under ``compiled_routes`` in ``GET /config/view``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.daemon import Daemon

FAST = {"max_attempts": 1}
PLUGINS = {
    "behave": {"enabled": True, "retry": FAST},
    "notify": {"enabled": True, "uses": "behave", "retry": FAST},
    "parked": {"enabled": False, "uses": "behave"},
}
GO = {"path": "payload.go", "op": "eq", "value": True}


def with_pipelines(gw: Daemon, pipelines: list[dict[str, Any]]) -> Daemon:
    gw.config["pipelines"] = pipelines
    gw.write_config()
    return gw


def test_a_config_with_two_invalid_pipelines_refuses_boot_listing_both_errors(gateway: Any) -> None:
    gw = with_pipelines(gateway(PLUGINS, start=False), [
        {"name": "first", "on": "ductile.sneaky", "steps": [{"uses": "behave"}]},
        {"name": "fine", "on": "thing.happened", "steps": [{"uses": "behave"}]},
        {"name": "second", "on": "thing.happened", "steps": [{"id": "tell", "uses": "nobody"}]},
    ])
    proc = gw.cli("system", "start", "--config", str(gw.root), timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    expected = [
        'pipeline "first": on must not use the reserved ductile. namespace',
        'pipeline "second" step "tell": uses "nobody" is not a configured plugin',
    ]
    for message in expected:
        assert message in lines, proc.stderr
    assert sorted(lines) == sorted(expected), "nothing but the errors, one per line"


def test_a_valid_pipeline_boots_and_config_view_shows_its_compiled_routes(gateway: Any) -> None:
    gw = with_pipelines(gateway(PLUGINS, start=False), [
        {"name": "flow", "on": "thing.happened", "from_plugin": "behave", "steps": [
            {"id": "first", "uses": "behave"},
            {"id": "gate", "uses": "notify.handle", "if": GO},
        ]},
        {"name": "on-failure", "on-hook": "job.failed", "steps": [{"uses": "notify"}]},
    ]).start()
    resp = gw.client.get("/config/view")
    assert resp.status_code == 200, resp.text
    routes = resp.json()["compiled_routes"]
    assert set(routes) == {"flow", "on-failure"}
    shapes = [(r["source"], r["destination"]) for r in routes["flow"]]
    step = {"kind": "step", "command": "handle"}
    assert sorted(shapes, key=json.dumps) == sorted([
        ({"trigger": "thing.happened", "source_plugin": "behave"}, {**step, "step_id": "first", "plugin": "behave"}),
        ({"pipeline": "flow", "step_id": "first"},
         {"kind": "switch", "step_id": "gate__switch", "plugin": "core.switch", "command": "switch"}),
        ({"pipeline": "flow", "step_id": "gate__switch", "event_type": "ductile.switch.true"},
         {**step, "step_id": "gate", "plugin": "notify"}),
        ({"pipeline": "flow", "step_id": "gate__switch", "event_type": "ductile.switch.false"},
         {**step, "step_id": "gate", "plugin": "notify"}),
        ({"pipeline": "flow", "step_id": "gate"}, {"kind": "terminal"}),
    ], key=json.dumps)
    assert all(isinstance(r["id"], str) and r["id"] for r in routes["flow"])
    assert [(r["source"], r["destination"]) for r in routes["on-failure"]] == [
        ({"hook_signal": "job.failed"}, {**step, "step_id": "step_1", "plugin": "notify"}),
        ({"pipeline": "on-failure", "step_id": "step_1"}, {"kind": "terminal"}),
    ]


def test_a_pipeline_using_a_disabled_plugin_is_logged_and_left_out_while_the_others_compile(gateway: Any) -> None:
    gw = with_pipelines(gateway(PLUGINS, start=False), [
        {"name": "stale", "on": "thing.happened", "steps": [{"uses": "behave"}, {"uses": "parked"}]},
        {"name": "watched", "on": "thing.happened", "from_plugin": "parked", "steps": [{"uses": "notify"}]},
        {"name": "live", "on": "thing.happened", "steps": [{"uses": "notify"}]},
    ]).start()
    errors = [line["msg"] for line in gw.log_lines() if line.get("level") == "ERROR"]
    assert 'pipeline "stale": uses "parked" is disabled' in errors
    assert 'pipeline "watched": uses "parked" is disabled' in errors
    routes = gw.client.get("/config/view").json()["compiled_routes"]
    assert set(routes) == {"live"}
    # Left out means it never matches: the event starts only the live pipeline's step.
    root = gw.trigger("behave", payload={"mode": "emit", "events": [{"type": "thing.happened", "payload": {}}]})
    assert gw.wait_job(root)["status"] == "succeeded"
    tree = gw.client.get(f"/job/{root}/tree").json()
    children = [j for j in tree if j["job_id"] != root]
    assert [j["plugin"] for j in children] == ["notify"], tree
