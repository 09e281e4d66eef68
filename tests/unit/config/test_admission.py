"""The admission gates of config.md §7: which are on, and the exact refusal texts at boot and reload."""

from __future__ import annotations

import pytest

from ductile.config.admission import ALL_GATES, Facts, Gates, gates_of, refusal
from ductile.config.integrity import IntegrityFinding, IntegrityKind, IntegrityReport
from ductile.config.model import Diagnostic, ServiceConfig

CLEAN = IntegrityReport([])
DRIFT = IntegrityReport([IntegrityFinding(IntegrityKind.DRIFT, "config drift: /c/p.yaml ...", "/c/p.yaml"),
                         IntegrityFinding(IntegrityKind.DRIFT, "config drift: /c/q.yaml ...", "/c/q.yaml")])
UNLOCKED = IntegrityReport([IntegrityFinding(IntegrityKind.NOT_LOCKED, "configuration is not locked; run "
                                             "'ductile config lock' to enable integrity verification")])
TAMPERED = IntegrityReport([IntegrityFinding(IntegrityKind.TAMPERING, "tampering detected: /c/webhooks.yaml does "
                                             "not match .checksums (high-security file); ...", "/c/webhooks.yaml")])
UNKNOWN = Diagnostic(level="warning", category="config", field="service.bogus",
                     message="config: key ignored (not a known field)", file="config.yaml")


def test_every_gate_defaults_to_off() -> None:
    assert gates_of(ServiceConfig(max_workers=1)) == (Gates(), [])


def test_strict_mode_without_an_admission_block_turns_every_gate_on_and_warns() -> None:
    gates, warnings = gates_of(ServiceConfig(max_workers=1, strict_mode=True))
    assert gates == ALL_GATES
    assert [w.message for w in warnings] == ["service.strict_mode is deprecated; use service.admission"]


def test_strict_mode_beside_an_admission_block_is_ignored_and_says_so() -> None:
    gates, warnings = gates_of(ServiceConfig(max_workers=1, strict_mode=True, admission={"fail_on_drift": True}))
    assert gates == Gates(fail_on_drift=True)
    assert [w.message for w in warnings] == [
        "service.strict_mode is deprecated; use service.admission (ignored: service.admission is set)"]


def test_without_gates_only_high_security_failures_refuse() -> None:
    assert refusal(Gates(), Facts(integrity=DRIFT)) is None
    assert refusal(Gates(), Facts(integrity=UNLOCKED)) is None
    assert refusal(Gates(), Facts(integrity=CLEAN, ignored=[UNKNOWN], doctor_errors=["x"], api_enabled=True)) is None
    assert refusal(Gates(), Facts(integrity=TAMPERED)) == TAMPERED.findings[0].message
    assert refusal(Gates(), Facts(integrity=TAMPERED), reload=True) == (
        "config reload rejected: " + TAMPERED.findings[0].message)


def test_fail_on_drift_texts_at_boot_and_reload() -> None:
    facts = Facts(integrity=DRIFT)
    assert refusal(Gates(fail_on_drift=True), facts) == (
        "integrity check failed (admission.fail_on_drift): operational drift: /c/p.yaml, /c/q.yaml")
    assert refusal(Gates(fail_on_drift=True), facts, reload=True) == (
        "config reload rejected (admission.fail_on_drift): operational drift: /c/p.yaml, /c/q.yaml")


def test_verify_integrity_on_boot_makes_a_missing_lock_and_fingerprint_failures_fatal() -> None:
    gate = Gates(verify_integrity_on_boot=True)
    assert refusal(gate, Facts(integrity=UNLOCKED)) == (
        "integrity check failed: configuration is not locked; run 'ductile config lock' to enable integrity verification")
    assert refusal(gate, Facts(integrity=CLEAN, fingerprint_failures=["plugin \"echo\" entrypoint ..."])) == (
        'integrity check failed: plugin "echo" entrypoint ...')
    assert refusal(Gates(), Facts(integrity=CLEAN, fingerprint_failures=["f"])) is None
    # At reload fingerprint failures always reject; a missing manifest only with the gate.
    assert refusal(Gates(), Facts(integrity=CLEAN, fingerprint_failures=["f"]), reload=True) == (
        "config reload rejected: integrity check failed: f")
    assert refusal(Gates(), Facts(integrity=UNLOCKED), reload=True) is None


def test_validate_config_on_boot_refuses_doctor_errors_then_ignored_keys() -> None:
    gate = Gates(validate_config_on_boot=True)
    assert refusal(gate, Facts(integrity=CLEAN, doctor_errors=["a", "b"])) == (
        "configuration validation failed: 2 error(s): a; b")
    assert refusal(gate, Facts(integrity=CLEAN, ignored=[UNKNOWN])) == (
        "1 ignored config key(s): config.yaml:service.bogus; fix or remove the keys, "
        "or disable service.admission.validate_config_on_boot")


@pytest.mark.parametrize(("enabled", "tokens", "refused"), [(True, 0, True), (True, 1, False), (False, 0, False)])
def test_require_api_auth_refuses_an_enabled_api_without_tokens(enabled: bool, tokens: int, refused: bool) -> None:
    got = refusal(Gates(require_api_auth=True), Facts(integrity=CLEAN, api_enabled=enabled, tokens=tokens))
    assert got == ("no API tokens configured" if refused else None)


def test_a_reload_gate_is_on_when_on_in_the_running_or_the_new_config() -> None:
    assert Gates(fail_on_drift=True).union(Gates(require_api_auth=True)) == Gates(
        fail_on_drift=True, require_api_auth=True)
