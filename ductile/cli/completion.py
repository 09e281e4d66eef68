"""Shell completion: ``ductile completion SHELL`` prints the script, ``ductile --install-completion``
installs it where the shell looks (cli.md §2.1).

Cyclopts writes the scripts from the command tree, so building one imports every noun's module;
that happens only here, after the command was chosen, so ``ductile version`` and ``--help`` stay
as cold as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from cyclopts import Parameter

from ductile.cli.output import fail

Shell = Literal["bash", "zsh", "fish"]
SHELLS: tuple[str, ...] = get_args(Shell)
PROG = "ductile"


def script(shell: str) -> str:
    """The completion script for ``shell``, naming the ``ductile`` executable."""
    if shell not in SHELLS:
        raise fail(f"unknown shell {shell!r}: choose one of {', '.join(SHELLS)}")
    from ductile.cli.main import app

    return app.generate_completion(prog_name=PROG, shell=shell)  # type: ignore[arg-type]


def completion(shell: str, /) -> None:
    """Print the completion script for a shell (bash, zsh or fish) on stdout.

    Its help, examples included, is in main.py (listed without importing this module).

    Parameters
    ----------
    shell
        bash, zsh or fish.
    """
    print(script(shell), end="")


def install(
    *,
    shell: Annotated[Shell | None, Parameter(help="bash, zsh or fish; by default the shell you run.")] = None,
    output: Annotated[Path | None, Parameter(help="Write the script here instead of where the shell looks.")] = None,
    add_to_startup: Annotated[bool, Parameter(help="Also source it from the shell's rc file.")] = True,
) -> None:
    """Install shell completion for ductile where bash, zsh or fish looks for it (help in main.py).

    bash: ~/.local/share/bash-completion/completions/ductile; zsh: ~/.zsh/completions/_cyclopts_ductile;
    fish: ~/.config/fish/completions/ductile.fish.
    """
    from cyclopts.completion.detect import detect_shell

    from ductile.cli.main import app

    chosen = shell or detect_shell()
    script(chosen)  # the same refusal as `completion` for a shell we do not support
    path = app.install_completion(shell=chosen, output=output, add_to_startup=add_to_startup)  # type: ignore[arg-type]
    print(f"Installed the {chosen} completion script: {path}")
    print("Open a new shell (or source that file) to use it.")
