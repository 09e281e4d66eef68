"""``config set <path>=<value> (--dry-run | --apply)`` (config.md §9). The write rules live in
ductile/config/editing.py (shared with ``config token``); this module parses and prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from ductile.cli.output import CliFailure

if TYPE_CHECKING:
    from ductile.config.model import Config

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
    """Set one key in the file that provides it, keeping comments; then validate."""
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
    try:
        target, after = set_key(cfg, path, value, dry_run=dry_run)
    except ConfigEditFailed as exc:
        if dry_run:
            from ductile.config.editing import target_file

            file = display_name(target_file(cfg, path), cfg.source.config_dir)
            print(DRY_RUN.format(path=text.strip(), value=shown, file=file))
            print("Validation: failed (1 error(s), 0 warning(s))")
            print(f"  ERROR [load] {exc}".replace("validation failed: ", "", 1))
            return 1
        raise CliFailure(str(exc)) from None
    file = display_name(target, cfg.source.config_dir)
    line = DRY_RUN if dry_run else APPLIED
    print(line.format(path=text.strip(), value=shown, file=file))
    code = _validation_summary(after)
    if not dry_run:
        high = tier_of(target, cfg.source.config_dir) == Tier.HIGH_SECURITY
        print(RELOCK_HIGH_SECURITY if high else RELOCK)
    return code


# lead: switch to app.config_check at merge
def _validation_summary(config: Config) -> int:
    """The summary line of ``config check`` for a config that loaded: 0 clean, 2 with warnings."""
    if not config.warnings:
        print("Validation: ✓ All checks passed")
        return 0
    print(f"Validation: passed with {len(config.warnings)} warning(s)")
    for warning in config.warnings:
        print(f"  WARN  [{warning.category}] {warning.field}: {warning.message}")
    return 2
