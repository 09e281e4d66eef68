"""`ductile config check` (config.md §6.5) and `ductile system doctor` (operations.md §6): what
boot would check, printed by ``config_report``; the work is ``ductile/runtime/config_check.py``."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from cyclopts import Parameter

from ductile.cli.output import fail

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]
FailOnWarningsOpt = Annotated[bool, Parameter(name="--fail-on-warnings", negative="",
                                              help="Exit 2 when there are warnings (and no error).")]
STRICT_NOTE = "note: --strict is deprecated; use --fail-on-warnings"


def check(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None,
          format: Annotated[Literal["human", "json"], Parameter(name="--format", help="human or json.")] = "human",
          json: bool = False, fail_on_warnings: FailOnWarningsOpt = False,
          strict: Annotated[bool, Parameter(name="--strict", negative="",
                                            help="Deprecated alias of --fail-on-warnings.")] = False) -> int:
    """Validate the config as boot would (load, plugins, doctor, integrity) without starting anything.

    **Examples:**

        ductile config check --config ./my-gateway
        ductile config check --fail-on-warnings --json
    """
    if strict:
        print(STRICT_NOTE, file=sys.stderr)
    return _run(config, config_dir, json=json or format == "json", fail_on_warnings=fail_on_warnings or strict)


def doctor(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None, json: bool = False,
           fail_on_warnings: FailOnWarningsOpt = False) -> int:
    """Diagnose the gateway's configuration, plugins and vault, running or not (same report as config check)."""
    return _run(config, config_dir, json=json, fail_on_warnings=fail_on_warnings, doctor=True)


def _run(config: str | None, config_dir: str | None, *, json: bool, fail_on_warnings: bool,
         doctor: bool = False) -> int:
    from ductile.cli.config_report import render
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError
    from ductile.runtime.config_check import check_config
    from ductile.runtime.doctor import doctor_report

    try:
        source = find_config(config, config_dir)
    except ConfigError as exc:
        raise fail(str(exc), json=json, prefix="config error") from None
    report = doctor_report(source) if doctor else check_config(source)
    return render(report, json=json, fail_on_warnings=fail_on_warnings)
