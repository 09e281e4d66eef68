"""``config set <path>=<value> (--dry-run | --apply)`` (config.md §9). The write rules live in
ductile/config/editing.py (shared with ``config token``); this module parses and prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from ductile.cli.output import CliFailure

if TYPE_CHECKING:
    from ductile.config.model import Config
    from ductile.runtime.config_check import Report

DRY_RUN = 'Dry-run: would set "{path}" to {value} in {file}'
APPLIED = 'Successfully set "{path}" to {value} in {file}'
RELOCK = "Run 'ductile config lock' to seal the change, then 'ductile system reload' to apply it."
RELOCK_HIGH_SECURITY = ("Run 'ductile config lock' to seal the change, then 'ductile system reload' to apply it; "
                        "the gateway will refuse to load until you run 'ductile config lock'.")


def set_(assignment: Annotated[str, Parameter(help="<path>=<value>; the value is a YAML flow value.")], /, *,
         dry_run: Annotated[bool, Parameter(name="--dry-run", help="Validate the change; write nothing.")] = False,
         apply: Annotated[bool, Parameter(help="Write the change (a .bak copy is kept).")] = False,
         config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")] = None,
         config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None) -> int:
    """Set one key in the file that provides it, keeping comments; then validate.

    **Examples:**

        ductile config set plugins.echo.enabled=true --apply
        ductile config set service.max_workers=8 --dry-run
    """
    from ductile.app.config_lock import Tier, tier_of
    from ductile.cli.common import resolve
    from ductile.config.documents import display_name
    from ductile.config.editing import ConfigEditFailed, parse_flow_value, set_key
    from ductile.config.errors import ConfigError
    from ductile.config.keypaths import KeyPathError, parse_key_path

    if dry_run == apply:
        raise CliFailure("config set: one of --dry-run or --apply is required")
    text, equals, raw_value = assignment.partition("=")
    if not equals or not text.strip():
        raise CliFailure("config set: expected <path>=<value>")
    try:
        path = parse_key_path(text)
        value = parse_flow_value(raw_value)
    except (KeyPathError, ConfigError) as exc:
        raise CliFailure(f"config set: {exc}") from None
    cfg = resolve(config, config_dir)
    shown = raw_value.strip()
    reports: list[Report] = []

    def validate(_after: Config) -> None:
        # The summary's own report is the validation (config.md §9): its errors undo the edit.
        report = validation_report(cfg)
        reports.append(report)
        if report.errors:
            first = report.errors[0]
            raise ConfigEditFailed(f"{first.field}: {first.message}")

    try:
        target, _ = set_key(cfg, path, value, dry_run=dry_run, validate=validate)
    except ConfigEditFailed as exc:
        if not dry_run:
            if reports and reports[-1].errors:
                _render(reports[-1])
            raise CliFailure(str(exc)) from None
        from ductile.config.editing import target_file
        from ductile.config.plaintext import substituted
        from ductile.runtime.config_check import Report

        # The dry run still reports on the edited config when it is what failed to validate.
        target = target_file(cfg, path)
        print(DRY_RUN.format(path=text.strip(), value=shown, file=display_name(target, cfg.source.config_dir)))
        if not reports and exc.text is not None:
            with substituted(target, exc.text):
                reports.append(validation_report(cfg))
        return _render(reports[-1] if reports else Report([]), failure=str(exc))
    file = display_name(target, cfg.source.config_dir)
    line = DRY_RUN if dry_run else APPLIED
    print(line.format(path=text.strip(), value=shown, file=file))
    code = _render(reports[-1])
    if not dry_run:
        high = tier_of(target, cfg.source.config_dir) == Tier.HIGH_SECURITY
        print(RELOCK_HIGH_SECURITY if high else RELOCK)
    return code


def validation_report(cfg: Config) -> Report:
    """``config check``'s report on the config as it now reads (the edited text, in a dry run),
    integrity excluded: the edit is by definition not sealed yet (config.md §9). Every config
    edit validates with it: ``config set`` and the ``config token`` verbs (§10)."""
    from ductile.runtime.config_check import INTEGRITY, Report, check_config

    return Report([f for f in check_config(cfg.source).findings if f.category != INTEGRITY])


def _render(report: Report, failure: str | None = None) -> int:
    """Print the validation summary; exit 0, 1 with errors, 2 with warnings. ``failure`` is why
    the edit failed when the report itself has no error to say it (an overridden value)."""
    from ductile.cli.config_report import render
    from ductile.runtime.config_check import Finding, Level, Report

    findings = list(report.findings)
    if failure is not None and not report.errors:
        findings.append(Finding(level=Level.ERROR, category="set", field="value",
                                message=failure.removeprefix("validation failed: ")))
    return render(Report(findings), json=False, fail_on_warnings=True)
