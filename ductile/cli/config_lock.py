"""The `config lock` verb (config.md §6.4); the use case is ductile/app/config_lock.py."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from ductile.cli.output import CliFailure


def lock(
    *,
    config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None,
    verbose: Annotated[bool, Parameter(name=["--verbose", "-v"], help="Print every file and plugin entry.")] = False,
    dry_run: Annotated[bool, Parameter(name="--dry-run", help="Show what would be locked; write nothing.")] = False,
) -> int:
    """Hash every config file into .checksums; plugin fingerprints of configured plugins are kept.

    **Examples:**

        ductile config lock
        ductile config lock --dry-run --verbose
    """
    import os

    from ductile.app import config_lock as cl
    from ductile.cli.common import find_source
    from ductile.config.errors import ConfigError

    source = find_source(config, config_dir)
    try:
        plan = cl.plan_lock(source, dict(os.environ))
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None
    except cl.ConfigLockError as exc:
        raise CliFailure(str(exc)) from None
    if verbose:
        print("\n".join(cl.verbose_lines(plan)))
    if dry_run:
        print(cl.DRY_RUN.format(count=len(plan.files), dir=plan.config_dir))
        return 0
    try:
        path = cl.write_lock(plan)
    except cl.ConfigLockError as exc:
        raise CliFailure(str(exc)) from None
    if verbose:
        print(cl.WROTE.format(path=path))
    print(cl.LOCKED.format(dir=plan.config_dir))
    return 0
