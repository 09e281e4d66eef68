"""``config init`` (cli.md §2.3); the use case is ductile/app/config_init.py."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from ductile.cli.output import CliFailure, emit_json


def init(*, config_dir: Annotated[str | None, Parameter(name="--config-dir",
                                                        help="The directory to create (default ~/.config/ductile).")] = None,
         force: Annotated[bool, Parameter(help="Overwrite an existing config.yaml; each replaced file is kept as FILE.bak.")] = False,
         json: bool = False) -> int:
    """Scaffold a config directory that boots as it is (API off), and lock it.

    **Examples:**

        ductile config init --config-dir ./my-gateway
    """
    import os
    from pathlib import Path

    from ductile.app.config_init import ConfigInitError, init_config_dir
    from ductile.config.paths import home_directory, resolve_path

    home = home_directory(os.environ)
    directory = resolve_path(config_dir, Path.cwd(), home) if config_dir else home / ".config" / "ductile"
    try:
        outcome = init_config_dir(directory, force=force)
    except ConfigInitError as exc:
        raise CliFailure(f"config init: {exc}") from None
    if json:
        emit_json({"config_dir": str(outcome.config_dir), "written": [str(p) for p in outcome.written]})
        return 0
    print(f"Initialised {outcome.config_dir}:")
    for path in outcome.written:
        print(f"  wrote {path}{'/' if path.is_dir() else ''}")
    return 0
