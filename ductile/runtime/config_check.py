"""What boot would check, without starting anything (config.md §5, §6.3, §6.5, §7).

``check_config`` is the report behind ``config check``, ``system doctor`` and ``GET
/system/doctor``: a full load that collects every load error, plugin discovery, the doctor's
validation, integrity under the config's own gates and the plugin fingerprints when the age key
is at hand. ``admit_boot`` and ``reload_refusal`` are the admission decisions (admission.py's
rules) that boot and reload apply to the config they are about to run.

It lives in ``runtime`` because the catalog, the schedule specs and the fingerprint attestation
it reuses live there; it writes nothing and opens no state database.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from enum import StrEnum
from pathlib import Path

import msgspec

from ductile.config.admission import (
    DRIFT_FATAL_SUFFIX,
    NO_API_TOKENS,
    Facts,
    Gates,
    gates_of,
    ignored_keys,
    refusal,
)
from ductile.config.discovery import ConfigSource
from ductile.config.errors import ConfigError
from ductile.config.integrity import IntegrityKind, IntegrityReport, verify
from ductile.config.loader import collect_config
from ductile.config.model import Config, Diagnostic
from ductile.config.paths import home_directory
from ductile.config.secret_refs import resolve as resolve_secret_ref
from ductile.pipelines.compiler import Compiled, compile_pipelines
from ductile.plugins.discovery import DiscoveryError, discover
from ductile.runtime.attestation import mismatch
from ductile.runtime.catalog import Catalog, build_catalog, with_lock
from ductile.runtime.scheduler import load_specs
from ductile.vault.document import VaultDocument

NO_AGE_KEY = "plugin fingerprints not verified: no age key"
TICK_BELOW_ONE_SECOND = "service.tick_interval is below 1s: every tick costs a scheduler pass"
CHECKSUMS_FIELD = ".checksums"


INTEGRITY = "integrity"  # the category of the lock's findings, which `config set` leaves out


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"  # the doctor's report of what is there (plugins loaded, next fires, head): never fails


class Finding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    level: Level
    category: str
    field: str
    message: str
    file: str | None = None


class Report(msgspec.Struct, frozen=True):
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.WARNING]

    @property
    def info(self) -> list[Finding]:
        return [f for f in self.findings if f.level is Level.INFO]

    @property
    def valid(self) -> bool:
        return not self.errors


def _load_error(error: ConfigError) -> Finding:
    # The field is where it happened (config.md §5's ``file:line``), so the line reads
    # ``ERROR [load] config.yaml:14: service.tick_interval must be at least 100ms``.
    where = f"{error.file}:{error.line}" if error.file and error.line is not None else (error.file or "config")
    return Finding(level=Level.ERROR, category="load", field=where, message=error.message, file=error.file)


def _diagnostic(d: Diagnostic, level: Level | None = None) -> Finding:
    # A load warning's message names its field, as the boot log prints it (``api.auth.tokens[0]:
    # literal token in config; ...``, config.md §4.3); the report line gives the field already.
    message = d.message.removeprefix(f"{d.field}: ")
    return Finding(level=level or Level(d.level), category=d.category, field=d.field, message=message, file=d.file)


def compile_for(config: Config, catalog: Catalog) -> Compiled:
    """``pipelines:`` compiled against the plugins this catalog runs (as boot compiles them)."""
    return compile_pipelines(
        config.pipelines, enabled=set(catalog.plugins), configured=set(config.plugins),
        configured_enabled={name for name, entry in config.plugins.items() if entry.enabled},
        relay_instances=config.relay_instance_names(),
    )


def integrity_findings(report: IntegrityReport, gates: Gates, *, stale: bool) -> list[Finding]:
    """§6.3's table as findings (§6.5's lines): errors always for the high-security rows, drift
    per ``fail_on_drift``, a missing manifest per ``verify_integrity_on_boot``."""
    out: list[Finding] = []
    for f in report.findings:
        level, message = Level.WARNING, f.message
        if f.is_error or (f.kind is IntegrityKind.NOT_LOCKED and gates.verify_integrity_on_boot):
            level = Level.ERROR
        elif f.kind is IntegrityKind.DRIFT and gates.fail_on_drift:
            level, message = Level.ERROR, message + DRIFT_FATAL_SUFFIX
        elif f.kind is IntegrityKind.STALE and not stale:
            continue
        out.append(Finding(level=level, category=INTEGRITY, field=CHECKSUMS_FIELD, message=message, file=f.path))
    return out


def fingerprint_failures(catalog: Catalog, document: VaultDocument) -> list[str]:
    """Enabled plugins that ``plugin lock`` recorded and whose bytes no longer match (§7)."""
    failures: list[str] = []
    for name, plugin in sorted(catalog.plugins.items()):
        recorded = catalog.lock.fingerprint(name) if catalog.lock is not None else None
        if recorded is None and catalog.lock_error is None:
            continue  # never attested: the dispatcher withholds secrets, admission has nothing to compare
        detail = mismatch(catalog, plugin, document)
        if detail is not None:
            failures.append(detail)
    return failures


class Checked(msgspec.Struct, frozen=True, kw_only=True):
    """The report and what it was made from, for the doctor's further findings: the config when it
    loaded, the catalog when discovery ran, the names discovery found in the plugin roots."""

    report: Report
    config: Config | None = None
    catalog: Catalog | None = None
    discovered: frozenset[str] = frozenset()


def check_config(source: ConfigSource, environ: MutableMapping[str, str] | None = None,
                 home: Path | None = None) -> Report:
    """Everything boot would check, as one report. Reads files only; starts nothing.

    ``environ`` (default: a copy of the process environment, so a check inside the gateway never
    changes its environment) receives the variables of the config's env files."""
    return run_checks(source, environ, home).report


def run_checks(source: ConfigSource, environ: MutableMapping[str, str] | None = None,
               home: Path | None = None) -> Checked:
    """``check_config`` with the config and catalog it loaded (``ductile/runtime/doctor.py``)."""
    env = dict(os.environ) if environ is None else environ
    result = collect_config(source, env)
    findings = [_load_error(e) for e in result.errors]
    config = result.config
    if config is None:
        return Checked(report=Report([*findings, *(_diagnostic(w) for w in result.warnings)]))
    gates, gate_warnings = gates_of(config.service)
    ignored = ignored_keys(config.warnings)
    for w in config.warnings:
        fatal = gates.validate_config_on_boot and w in ignored
        findings.append(_diagnostic(w, Level.ERROR if fatal else None))
    findings.extend(_diagnostic(w) for w in gate_warnings)
    if config.service.tick_interval < 1.0:
        findings.append(Finding(level=Level.WARNING, category="service", field="service.tick_interval",
                                message=TICK_BELOW_ONE_SECOND))
    findings.extend(integrity_findings(verify(config.files, config.source.config_dir), gates, stale=True))
    catalog, discovered = _catalog(config, findings)
    if catalog is None:
        return Checked(report=Report(findings), config=config)
    findings.extend(_doctor_findings(config, catalog))
    findings.extend(_vault_findings(config, catalog, gates, env, home or home_directory(env)))
    if gates.require_api_auth and config.api.enabled and not config.api.tokens:
        findings.append(Finding(level=Level.ERROR, category="admission", field="api.auth.tokens", message=NO_API_TOKENS))
    return Checked(report=Report(findings), config=config, catalog=catalog, discovered=discovered)


def _catalog(config: Config, findings: list[Finding]) -> tuple[Catalog | None, frozenset[str]]:
    try:
        discovered, notes = discover(config.plugin_roots, config.service.allow_symlinks)
        catalog = with_lock(build_catalog(config, discovered), config.source.config_dir)
    except ConfigError as exc:
        findings.append(_load_error(exc))
        return None, frozenset()
    except DiscoveryError as exc:
        findings.append(Finding(level=Level.ERROR, category="load", field="plugin_roots", message=str(exc)))
        return None, frozenset()
    for note in notes:
        if note.level.lower() in ("warn", "warning", "error"):
            findings.append(Finding(level=Level.WARNING, category="plugins", field="plugin_roots",
                                    message=_note_text(note.msg, note.fields)))
    return catalog, frozenset(discovered)


def _note_text(msg: str, fields: dict[str, object]) -> str:
    detail = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{msg} ({detail})" if detail else msg


def _doctor_findings(config: Config, catalog: Catalog) -> list[Finding]:
    out = [Finding(level=Level(p.level), category="plugins", field=p.field, message=p.message)
           for p in catalog.problems]
    compiled = compile_for(config, catalog)
    out += [Finding(level=Level.ERROR, category="pipelines", field="pipelines", message=m) for m in compiled.errors]
    out += [Finding(level=Level.ERROR, category="pipelines", field="pipelines", message=m) for m in compiled.doctor]
    out += [Finding(level=Level.WARNING, category="pipelines", field="pipelines", message=m) for m in compiled.warnings]
    specs, notes = load_specs(config, catalog)
    for spec in specs:
        if not spec.valid:
            out.append(Finding(level=Level.ERROR, category="schedules",
                               field=f"plugins.{spec.plugin}.schedules[{spec.index}]",
                               message=f'plugin "{spec.plugin}": schedule "{spec.id}": {spec.invalid_detail}'))
    out += [Finding(level=Level.WARNING, category="schedules", field="schedules", message=m) for m in notes]
    return out


def _vault_findings(config: Config, catalog: Catalog, gates: Gates, env: MutableMapping[str, str],
                    home: Path) -> list[Finding]:
    """What needs the vault: ``secret_ref`` tokens, ``requires_vault`` principals, fingerprints."""
    from ductile.app.vault import resolve_key, vault_path
    from ductile.commands.delivery import PRINCIPAL_NOT_REGISTERED
    from ductile.config.webhooks import check_secret_refs as check_webhook_secret_refs
    from ductile.vault.blob import BlobFile, VaultBlobError
    from ductile.vault.keys import AgeKeyError

    path = vault_path(config)
    out: list[Finding] = []
    document: VaultDocument | None = None
    try:
        keyring = resolve_key(config, env, home)
        if keyring is not None and path.exists():
            document = BlobFile(path).read(keyring.identities)
    except (AgeKeyError, VaultBlobError) as exc:
        return [Finding(level=Level.ERROR, category="vault", field="secrets", message=str(exc))]
    # webhooks.md §1: an endpoint's secret_ref that cannot be checked for want of the key only warns.
    hooks = check_webhook_secret_refs(config.webhooks, document, vault_unreadable=path.exists() and document is None)
    out += [_load_error(e) for e in hooks.errors]
    out += [Finding(level=Level.WARNING, category="webhooks", field="webhooks.endpoints", message=w)
            for w in hooks.warnings]
    if path.exists() and document is None:  # a vault, no key: nothing below can be verified
        return [*out, Finding(level=Level.WARNING, category=INTEGRITY, field="plugin_fingerprints", message=NO_AGE_KEY)]
    for index, entry in enumerate(config.api.tokens):
        if entry.secret_ref is not None:
            try:
                resolve_secret_ref(document, entry.secret_ref, f"api.auth.tokens[{index}]")
            except ConfigError as exc:
                out.append(_load_error(exc))
    principals = document.principals if document is not None else {}
    for name, plugin in sorted(catalog.plugins.items()):
        principal = plugin.entry.vault_principal or name
        if plugin.entry.requires_vault and principal not in principals:
            out.append(Finding(level=Level.ERROR, category="vault", field=f"plugins.{name}.requires_vault",
                               message=f'plugin "{name}": ' + PRINCIPAL_NOT_REGISTERED.format(principal=principal)))
    if document is not None:
        level = Level.ERROR if gates.verify_integrity_on_boot else Level.WARNING
        out += [Finding(level=level, category=INTEGRITY, field="plugin_fingerprints", message=m)
                for m in fingerprint_failures(catalog, document)]
    elif catalog.lock is not None and catalog.lock.plugin_fingerprints:  # recorded, but no vault nonce to key them
        out.append(Finding(level=Level.WARNING, category=INTEGRITY, field="plugin_fingerprints", message=NO_AGE_KEY))
    return out


# --- admission at boot and at reload (config.md §7) ----------------------------------------------


def _facts(config: Config, catalog: Catalog, compiled: Compiled | None, document: VaultDocument | None,
           tokens: int) -> Facts:
    doctor = [p.message for p in catalog.problems if p.level == "error"]
    if compiled is not None:
        doctor += compiled.doctor
    return Facts(
        integrity=verify(config.files, config.source.config_dir),
        fingerprint_failures=fingerprint_failures(catalog, document) if document is not None else [],
        doctor_errors=doctor,
        ignored=ignored_keys(config.warnings),
        api_enabled=config.api.enabled,
        tokens=tokens,
    )


def admit_boot(config: Config, catalog: Catalog, compiled: Compiled | None, document: VaultDocument | None,
               tokens: int) -> list[str]:
    """The gates at boot: raise ConfigError with §7's refusal, else return the warnings to log
    (drift, a missing manifest, the strict_mode deprecation)."""
    gates, gate_warnings = gates_of(config.service)
    facts = _facts(config, catalog, compiled, document, tokens)
    refused = refusal(gates, facts)
    if refused is not None:
        raise ConfigError(refused)
    warnings = [w.message for w in gate_warnings]
    warnings += [f.message for f in integrity_findings(facts.integrity, gates, stale=False)]
    warnings += facts.fingerprint_failures  # not fatal without verify_integrity_on_boot; the dispatcher withholds secrets
    return warnings


def reload_refusal(running: Config, new: Config, *, catalog: Catalog | None = None,
                   compiled: Compiled | None = None, document: VaultDocument | None = None,
                   tokens: int | None = None) -> str | None:
    """Why a reload to ``new`` is rejected by §6.3 and the gates (on in ``running`` or ``new``),
    with §7's reload texts; None when it is admitted.

    The reload passes what it has built for the new runtime (its catalog, compiled pipelines, the
    vault document, the number of resolved tokens); a missing catalog is built here.
    """
    gates = gates_of(running.service)[0].union(gates_of(new.service)[0])
    if catalog is None:
        discovered, _ = discover(new.plugin_roots, new.service.allow_symlinks)
        catalog = with_lock(build_catalog(new, discovered), new.source.config_dir)
    count = len(new.api.tokens) if tokens is None else tokens
    return refusal(gates, _facts(new, catalog, compiled, document, count), reload=True)
