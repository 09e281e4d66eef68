"""The ``ductile`` executable: ``ductile <noun> <verb> [args] [flags]``.

Nouns are loaded lazily so that ``ductile version`` and ``--help`` never import the web stack.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import NoReturn

from cyclopts import App

from ductile.cli.output import CliFailure, debugging, emit_json

app = App(
    name="ductile",
    help="Ductile: a self-hosted, event-sourced automation gateway.",
    version_flags=[],
)
app.command("ductile.cli.system:app", name="system",
            help="Run and maintain the gateway: start, stop, status, reload, rebuild, skills.")
app.command("ductile.cli.job:app", name="job", help="Jobs in the ledger: inspect, logs, list.")
app.command("ductile.cli.plugin:app", name="plugin", help="Plugins on the running gateway: list, show, run.")
# The nouns that are one command keep their help here, examples included, so that listing them in
# ``ductile --help`` imports none of their modules (a lazy command's docstring would).
app.command("ductile.cli.api:api", name="api", help=(
    "Call any gateway route and print the response body (pretty JSON when it is JSON).\n\n"
    "Exit 0 when HTTP < 400, 1 otherwise (the body is still printed). /events streams its frames until Ctrl-C.\n\n"
    "**Examples:**\n\n"
    "    ductile api /healthz\n"
    "    ductile api /plugin/echo/poll -f message=hi\n"
    "    ductile api /pipeline/greeting-followup -f name=Ada\n"))
app.command("ductile.cli.skills:skills", name="skills", help=(
    "Print the LLM operator skill manifest: CLI commands, plugin commands and pipelines.\n\n"
    "**Examples:**\n\n"
    "    ductile skills --config ./my-gateway\n"
    "    ductile skills --json\n"))
app.command("ductile.cli.secrets:app", name="secrets",
            help="age keys and age-encrypted config files (not the vault): keygen, encrypt, rotate.")
app.command("ductile.cli.config:app", name="config",
            help="The configuration: the integrity lock (lock) and scoped API tokens (token create, list, revoke).")
app.command("ductile.cli.vault:app", name="vault",
            help="The secrets vault: init, get, list, status, set, roll, revoke, principals, rotate-key, import, audit.")
app.command("ductile.cli.relay:app", name="relay", help="Send an event to a peer gateway (later phase).")
app.command("ductile.cli.completion:completion", name="completion", help=(
    "Print the shell completion script for bash, zsh or fish on stdout.\n\n"
    "**Examples:**\n\n"
    "    ductile completion bash > ~/.bash_completion.d/ductile\n"
    "    ductile completion zsh > ~/.zsh/completions/_ductile\n"))
app.command("ductile.cli.completion:install", name="--install-completion", help=(
    "Install shell completion for bash, zsh or fish where that shell looks for it, and source it from the "
    "shell's rc file (--no-add-to-startup leaves that alone). Open a new shell afterwards.\n\n"
    "**Examples:**\n\n"
    "    ductile --install-completion\n"
    "    ductile --install-completion --shell zsh\n"))


@app.command
def version(*, json: bool = False) -> None:
    """Print the version, commit and build time.

    The commit is the one the package was built from, or the checkout's HEAD when run from a clone.

    **Examples:**

        ductile version
        ductile version --json

    Parameters
    ----------
    json
        Print ``{"version", "commit", "build_time"}``.
    """
    from ductile.system.build_info import build_info

    info = build_info()
    if json:
        emit_json(info)
        return
    print(f"ductile {info['version']}")
    print(f"commit: {info['commit']}")
    print(f"built_at: {info['build_time']}")


_SINGLE_DASH_LONG = re.compile(r"^-([a-z][a-z0-9-]+)(=.*)?$")


def normalise_argv(argv: list[str]) -> list[str]:
    """Accept ``-config x`` for ``--config x`` (compatibility), ``help`` for ``--help``, and ``-`` (stdin)
    as a flag's value (``-b -``, ``--payload-file -``), which the parser would otherwise take for a flag."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg == "-" and out and out[-1].startswith("-") and out[-1] != "--" and "=" not in out[-1]:
            out[-1] += "=-"
            continue
        m = _SINGLE_DASH_LONG.match(arg)
        if m and len(m.group(1)) > 1:
            arg = "-" + arg
        out.append(arg)
    if out and out[0] == "--version":
        out[0] = "version"
    if out and out[-1] == "help":
        out[-1] = "--help"
    return out


NOUNS_WITH_VERBS = {"system", "job", "plugin", "api", "relay", "secrets", "vault", "config"}  # bare: usage on stderr, exit 2


def run(argv: list[str] | None = None) -> None:
    args = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    if not args or (len(args) == 1 and args[0] in NOUNS_WITH_VERBS):
        saved = sys.stdout
        sys.stdout = sys.stderr
        try:
            app([*args, "--help"], exit_on_error=False)
        except SystemExit:
            pass
        finally:
            sys.stdout = saved
        sys.exit(2)
    json_output = wants_json(args)
    try:
        try:
            result = app(args, exit_on_error=False, print_error=False)
        except CliFailure as exc:
            print(f"{exc.prefix}: {exc.message}", file=sys.stderr)
            if json_output and not exc.json_written:
                emit_json({"error": exc.message})
            sys.exit(exc.code)
        except KeyboardInterrupt:
            sys.exit(130)
        except SystemExit:
            raise
        except BrokenPipeError:
            raise
        except Exception as exc:
            if _is_parse_error(exc):
                chain = " ".join(getattr(exc, "command_chain", None) or ())
                usage = f"ductile {chain} --help" if chain else "ductile --help"
                print(f"error: {' '.join(str(exc).split())} (usage: {usage})", file=sys.stderr)
                sys.exit(2)
            internal_error(exc, json_output)
        if isinstance(result, int):
            sys.exit(result)
    except BrokenPipeError as exc:
        if not stdout_reader_gone():
            internal_error(exc, json_output)
        # ``ductile … | head``: the reader has what it wanted. End quietly, as ``git log | head``
        # does, and point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def internal_error(exc: BaseException, json_output: bool) -> NoReturn:
    """An unexpected fault: one line (the traceback only with ``DUCTILE_DEBUG=1``), exit 1."""
    if debugging():
        traceback.print_exception(exc)
    message = f"internal error: {type(exc).__name__}: {exc}"
    print(f"error: {message}", file=sys.stderr)
    if json_output:
        emit_json({"error": message})
    sys.exit(1)


def wants_json(args: list[str]) -> bool:
    """``--json`` on the command line (before a ``--`` that ends the flags)."""
    flags = args[: args.index("--")] if "--" in args else args
    return "--json" in flags


def stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end is closed (a BrokenPipeError from elsewhere,
    such as a plugin's stdin, is a fault and must still be reported)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _is_parse_error(exc: Exception) -> bool:
    from cyclopts.exceptions import CycloptsError

    return isinstance(exc, CycloptsError)


if __name__ == "__main__":
    run()
