"""`config check` and `system doctor` on real config dirs, and what boot does with integrity and
the admission gates (config.md §5, §6.3, §6.5, §7): the real CLI, the real daemon."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.daemon import Daemon, call, wait_until

PLUGINS = {"shellok": {"enabled": True}}


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A daemon's config dir (not started) whose plugins live in an included plugins.yaml."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    d = Daemon(tmp_path / "gw", plugins={})
    del d.config["plugins"]
    d.config["include"] = ["plugins.yaml"]
    d.write_config()
    (d.root / "plugins.yaml").write_text(yaml.safe_dump({"plugins": PLUGINS}))
    try:
        yield d
    finally:
        d.close()


def set_service(d: Daemon, **service: Any) -> None:
    d.config["service"].update(service)
    d.write_config()


def lock(d: Daemon) -> None:
    done = d.cli("config", "lock", "--config-dir", str(d.root))
    assert done.returncode == 0, done.stderr


def check(d: Daemon, *flags: str) -> subprocess.CompletedProcess[str]:
    return d.cli("config", "check", "--config-dir", str(d.root), *flags)


def refused_start(d: Daemon) -> subprocess.CompletedProcess[str]:
    """`system start` that must refuse: it exits by itself (a gateway that starts times out)."""
    return d.cli("system", "start", "--config-dir", str(d.root), timeout=60)


def test_config_check_exits_0_1_2_with_the_spec_lines_and_json(gw: Daemon) -> None:
    lock(gw)
    clean = check(gw)
    # The literal token of the test config is the one warning (config.md §4.3).
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout.splitlines()[0] == "Validation: passed with 1 warning(s)"
    assert check(gw, "--fail-on-warnings").returncode == 2
    strict = check(gw, "--strict")
    assert strict.returncode == 2 and "--strict is deprecated" in strict.stderr

    (gw.root / "plugins.yaml").write_text(yaml.safe_dump({"plugins": {**PLUGINS, "ghost": {"enabled": True}}}))
    failed = check(gw, "--format", "json")
    assert failed.returncode == 1
    body = json.loads(failed.stdout)
    assert set(body) == {"valid", "errors", "warnings"} and body["valid"] is False
    assert {"category": "plugins", "field": "plugins.ghost",
            "message": 'plugin "ghost": not discovered in plugin_roots'} in body["errors"]
    drift = {"category": "integrity", "field": ".checksums", "file": str(gw.root / "plugins.yaml"),
             "message": f"config drift: {gw.root / 'plugins.yaml'} changed since the last 'ductile config lock' "
                        "(operational file)"}
    assert drift in body["warnings"]


def test_config_check_reports_every_load_error_with_file_and_line(gw: Daemon) -> None:
    gw.config["service"]["tick_interval"] = "1ms"
    gw.config["api"]["max_concurrent_sync"] = 0
    gw.write_config()
    done = check(gw)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("  ERROR [load] config.yaml:")]
    assert len(errors) == 2 and "service.tick_interval must be at least 100ms" in errors[0], done.stdout
    assert "api.max_concurrent_sync must be > 0" in errors[1]


def test_a_tampered_high_security_file_refuses_boot(gw: Daemon) -> None:
    (gw.root / "webhooks.yaml").write_text("webhooks: {endpoints: []}\n")
    lock(gw)
    (gw.root / "webhooks.yaml").write_text("webhooks: {endpoints: []}\n# edited\n")
    done = refused_start(gw)
    assert done.returncode == 1
    assert (f"tampering detected: {gw.root / 'webhooks.yaml'} does not match .checksums (high-security file); "
            f"if you made this change, run 'ductile config lock --config-dir {gw.root}'") in done.stderr
    assert check(gw).returncode == 1


def test_drift_fails_boot_only_under_fail_on_drift(gw: Daemon) -> None:
    set_service(gw, admission={"fail_on_drift": True})
    lock(gw)
    (gw.root / "plugins.yaml").write_text(yaml.safe_dump({"plugins": {"shellok": {"enabled": True,
                                                                                 "parallelism": 1}}}))
    done = refused_start(gw)
    assert done.returncode == 1
    assert ("integrity check failed (admission.fail_on_drift): operational drift: "
            f"{gw.root / 'plugins.yaml'}") in done.stderr


def test_validate_config_on_boot_refuses_an_unknown_key(gw: Daemon) -> None:
    set_service(gw, admission={"validate_config_on_boot": True}, tick=5)
    lock(gw)
    done = refused_start(gw)
    assert done.returncode == 1
    assert ("1 ignored config key(s): config.yaml:service.tick; fix or remove the keys, "
            "or disable service.admission.validate_config_on_boot") in done.stderr


def test_a_running_gateway_warns_of_drift_and_strict_mode_and_its_doctor_reports_tampering(gw: Daemon) -> None:
    set_service(gw, strict_mode=True, admission={"fail_on_drift": False})
    (gw.root / "webhooks.yaml").write_text("webhooks: {endpoints: []}\n")
    lock(gw)
    (gw.root / "plugins.yaml").write_text(yaml.safe_dump({"plugins": {"shellok": {"enabled": True,
                                                                                 "parallelism": 2}}}))
    gw.start()
    warned = {line["msg"] for line in gw.log_lines() if line.get("level") in ("warn", "WARN", "warning")}
    assert (f"config drift: {gw.root / 'plugins.yaml'} changed since the last 'ductile config lock' "
            "(operational file)") in warned, warned
    assert "service.strict_mode is deprecated; use service.admission (ignored: service.admission is set)" in warned
    body = call(gw, "GET", "/system/doctor").json()
    assert body["ok"] is True
    (gw.root / "webhooks.yaml").write_text("webhooks: {endpoints: []}\n# edited\n")
    body = wait_until(lambda: (b := call(gw, "GET", "/system/doctor").json()) and not b["ok"] and b, 10,
                      what="doctor to see the tampering")
    tampered = [c for c in body["checks"] if c.get("detail", "").startswith("tampering detected: ")]
    assert tampered and tampered[0] == {"name": "integrity", "ok": False, "severity": "error", "field": ".checksums",
                                        "detail": tampered[0]["detail"]}
    doctor = gw.cli("system", "doctor", "--config-dir", str(gw.root), "--json")
    assert doctor.returncode == 1 and json.loads(doctor.stdout)["valid"] is False
