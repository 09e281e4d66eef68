"""A plugin whose manifest declares a command twice, as the reference's own sys_exec template
declares ``poll``, still loads (plugins.md §2, issue 19 item 6): the first entry is used, the
gateway logs one WARN, ``config check`` and ``system doctor`` show it as a warning, and a
pipeline using the plugin runs. Before, the plugin was refused and the pipeline answered 404.

The plugin lives in its own root (tests/plugin_templates/) so that the warning it draws does not
appear in every other test's ``config check``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.daemon import REPO, TEST_PLUGINS, Daemon, call

TEMPLATES = REPO / "tests" / "plugin_templates"
WARNING = 'plugin sysexec: command "poll" declared twice; the first entry is used'
PIPELINES = [{"name": "exec-now", "on": "exec.now", "execution_mode": "synchronous", "timeout": "20s",
              "steps": [{"id": "run", "uses": "sysexec"}]}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("repeated") / "gw", {"sysexec": {"enabled": True, "retry": {"max_attempts": 1}}},
               plugin_roots=[str(TEST_PLUGINS), str(TEMPLATES)])
    d.config["pipelines"] = PIPELINES
    d.write_config()
    d.start()
    yield d
    d.close()


def test_the_plugin_loads_with_the_first_entry_and_one_warning(gw: Daemon) -> None:
    shown = call(gw, "GET", "/plugin/sysexec")
    assert shown.status_code == 200, shown.text
    commands = shown.json()["commands"]
    assert [(c["name"], c["type"]) for c in commands] == [("poll", "read"), ("handle", "write")]
    warned = [line for line in gw.log_lines() if line.get("msg") == WARNING]
    assert len(warned) == 1 and warned[0]["level"].lower().startswith("warn"), warned


def test_a_pipeline_using_the_plugin_runs(gw: Daemon) -> None:
    resp = call(gw, "POST", "/pipeline/exec-now", json={"payload": {}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "succeeded", resp.json()
    job = call(gw, "POST", "/plugin/sysexec/poll", json={})
    assert job.status_code == 202, job.text
    assert gw.wait_job(job.json()["job_id"])["status"] == "succeeded"


@pytest.mark.parametrize("verb", [("config", "check"), ("system", "doctor")])
def test_config_check_and_doctor_show_it_as_a_warning(gw: Daemon, verb: tuple[str, str]) -> None:
    done = gw.cli(*verb, "--config-dir", str(gw.root), "--json")
    body = json.loads(done.stdout)
    assert body["valid"] is True, body
    assert [w for w in body["warnings"] if WARNING in w["message"]], body["warnings"]
    assert not [e for e in body["errors"] if "sysexec" in e["message"]]
