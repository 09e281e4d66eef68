"""The validation report as `config check`, `system doctor` and `config set` print it (config.md
§6.5): the human summary and lines, or ``{valid, errors, warnings}``; the exit code 0 / 1 / 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ductile.cli.output import emit_json

if TYPE_CHECKING:
    from ductile.runtime.config_check import Finding, Report

PASSED = "Validation: ✓ All checks passed"
PASSED_WITH_WARNINGS = "Validation: passed with {warnings} warning(s)"
FAILED = "Validation: failed ({errors} error(s), {warnings} warning(s))"
EXIT_VALID, EXIT_ERRORS, EXIT_WARNINGS = 0, 1, 2


def exit_code(report: Report, *, fail_on_warnings: bool) -> int:
    if report.errors:
        return EXIT_ERRORS
    return EXIT_WARNINGS if fail_on_warnings and report.warnings else EXIT_VALID


def summary(report: Report) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    if errors:
        return FAILED.format(errors=errors, warnings=warnings)
    return PASSED_WITH_WARNINGS.format(warnings=warnings) if warnings else PASSED


def line(finding: Finding) -> str:
    word = {"error": "ERROR", "warning": "WARN "}.get(finding.level, "INFO ")
    return f"  {word} [{finding.category}] {finding.field}: {finding.message}"


def human_lines(report: Report) -> list[str]:
    return [summary(report), *(line(f) for f in report.errors), *(line(f) for f in report.warnings),
            *(line(f) for f in report.info)]


def document(report: Report) -> dict[str, object]:
    def entry(f: Finding) -> dict[str, str]:
        out = {"category": f.category, "field": f.field, "message": f.message}
        if f.file is not None:
            out["file"] = f.file
        return out

    out: dict[str, object] = {"valid": report.valid, "errors": [entry(f) for f in report.errors],
                              "warnings": [entry(f) for f in report.warnings]}
    if report.info:  # only `system doctor` reports what is there; `config check`'s shape is unchanged
        out["info"] = [entry(f) for f in report.info]
    return out


def render(report: Report, *, json: bool, fail_on_warnings: bool) -> int:
    """Print the report on stdout and return the exit code."""
    if json:
        emit_json(document(report))
    else:
        print("\n".join(human_lines(report)))
    return exit_code(report, fail_on_warnings=fail_on_warnings)
