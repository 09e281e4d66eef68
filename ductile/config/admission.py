"""The admission gates of ``service.admission`` (config.md §7): which are on, and what they refuse.

Pure: the caller gathers the facts (integrity findings, doctor errors, ignored keys, tokens) and
this module decides, with the spec's exact texts. Boot and reload share the rules; at reload a
gate is on when it is on in the running **or** the new config, so a reload never relaxes one.
"""

from __future__ import annotations

import msgspec

from ductile.config.integrity import IntegrityKind, IntegrityReport
from ductile.config.merging import ROOT_ONLY_IGNORED
from ductile.config.model import Diagnostic, ServiceConfig
from ductile.config.shapes import UNKNOWN_KEY_MESSAGE

STRICT_MODE_DEPRECATED = "service.strict_mode is deprecated; use service.admission"
STRICT_MODE_IGNORED = STRICT_MODE_DEPRECATED + " (ignored: service.admission is set)"
INTEGRITY_FAILED = "integrity check failed: {detail}"
DRIFT_FATAL_AT_BOOT = "integrity check failed (admission.fail_on_drift): operational drift: {paths}"
DRIFT_FATAL_AT_RELOAD = "config reload rejected (admission.fail_on_drift): operational drift: {paths}"
RELOAD_REJECTED = "config reload rejected: {detail}"
VALIDATION_FAILED = "configuration validation failed: {count} error(s): {errors}"
KEYS_IGNORED = ("{count} ignored config key(s): {keys}; fix or remove the keys, "
                "or disable service.admission.validate_config_on_boot")
NO_API_TOKENS = "no API tokens configured"
DRIFT_FATAL_SUFFIX = " (fatal: admission.fail_on_drift)"


class Gates(msgspec.Struct, frozen=True):
    verify_integrity_on_boot: bool = False
    fail_on_drift: bool = False
    validate_config_on_boot: bool = False
    require_api_auth: bool = False

    def union(self, other: Gates) -> Gates:
        """On where either is on: the gates of a reload (running or new config, §7)."""
        return Gates(*(a or b for a, b in zip(msgspec.structs.astuple(self), msgspec.structs.astuple(other),
                                                   strict=True)))


ALL_GATES = Gates(True, True, True, True)


def gates_of(service: ServiceConfig) -> tuple[Gates, list[Diagnostic]]:
    """The gates the root config sets, and the strict_mode deprecation warning when it is set.

    ``strict_mode: true`` turns every gate on only when no ``admission`` block exists.
    """
    warnings: list[Diagnostic] = []
    given = service.admission
    gates = Gates(**{k: bool(v) for k, v in given.items() if k in Gates.__struct_fields__})
    if service.strict_mode:
        message = STRICT_MODE_IGNORED if given else STRICT_MODE_DEPRECATED
        warnings.append(Diagnostic(level="warning", category="admission", field="service.strict_mode", message=message))
        if not given:
            gates = ALL_GATES
    return gates, warnings


def ignored_keys(warnings: list[Diagnostic]) -> list[Diagnostic]:
    """The load's warnings that name a key it ignored: unknown keys (§4.6) and root-only keys
    set in an include (§2). Both are fatal under ``validate_config_on_boot``."""
    return [w for w in warnings if w.message == UNKNOWN_KEY_MESSAGE or w.message.endswith(ROOT_ONLY_IGNORED)]


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """What admission decides on, gathered by the caller from one full load."""

    integrity: IntegrityReport
    fingerprint_failures: list[str] = []  # enabled plugins whose recorded bytes changed
    doctor_errors: list[str] = []
    ignored: list[Diagnostic] = []  # ignored_keys(config.warnings)
    api_enabled: bool = False
    tokens: int = 0  # api.auth.tokens entries that resolve


def refusal(gates: Gates, facts: Facts, *, reload: bool = False) -> str | None:
    """The first reason the gates refuse this config (boot or reload texts of §7), else None.

    Without any gate, integrity still runs: a high-security failure or an unreadable lock is
    fatal; drift and a missing manifest only warn.
    """
    def rejected(detail: str) -> str:
        return RELOAD_REJECTED.format(detail=detail) if reload else detail

    if facts.integrity.error_text:
        return rejected(facts.integrity.error_text)
    missing = facts.integrity.of(IntegrityKind.NOT_LOCKED)
    if missing and gates.verify_integrity_on_boot:
        return rejected(INTEGRITY_FAILED.format(detail=missing[0].message))
    if facts.fingerprint_failures and (gates.verify_integrity_on_boot or reload):
        return rejected(INTEGRITY_FAILED.format(detail="; ".join(facts.fingerprint_failures)))
    drifted = facts.integrity.drifted
    if drifted and gates.fail_on_drift:
        paths = ", ".join(drifted)
        return (DRIFT_FATAL_AT_RELOAD if reload else DRIFT_FATAL_AT_BOOT).format(paths=paths)
    if gates.validate_config_on_boot:
        if facts.doctor_errors:
            return rejected(VALIDATION_FAILED.format(count=len(facts.doctor_errors), errors="; ".join(facts.doctor_errors)))
        if facts.ignored:
            return rejected(keys_ignored(facts.ignored))
    if gates.require_api_auth and facts.api_enabled and facts.tokens == 0:
        return rejected(NO_API_TOKENS)
    return None


def keys_ignored(ignored: list[Diagnostic]) -> str:
    keys = ", ".join(f"{d.file}:{d.field}" if d.file else d.field for d in ignored)
    return KEYS_IGNORED.format(count=len(ignored), keys=keys)
