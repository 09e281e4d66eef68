"""deploy/ holds the service files of operations.md §3; each must start the CLI we ship, with the
paths our defaults and the spec's state dir use, so a copied unit cannot drift from the code."""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ductile.cli.main import app
from ductile.config.discovery import SYSTEM_CONFIG_DIR
from ductile.system.pidlock import pid_path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "ductile.service"
BACKUP_UNIT = DEPLOY / "systemd" / "ductile-backup.service"
BACKUP_TIMER = DEPLOY / "systemd" / "ductile-backup.timer"
AGENT = DEPLOY / "launchd" / "com.ductile.gateway.plist"
BACKUP_AGENT = DEPLOY / "launchd" / "com.ductile.backup.plist"
BINARY = "/usr/local/bin/ductile"
STATE_PATH = Path("/var/lib/ductile/ductile.db")  # the unit's documented state.path


def unit_sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's INI dialect: ``[Section]``, ``Key=value`` (a key may repeat), ``#`` comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_cli(argv: list[str]) -> tuple[str, dict[str, object]]:
    """The command our cyclopts app would run for ``argv`` (without running it)."""
    command, bound, _ = app.parse_args(argv)
    return command.__name__, dict(bound.arguments)


def shell_words(script: str) -> list[str]:
    """``sh -c`` script words with each ``$(…)`` expanded to a stand-in, as the shell would."""
    return shlex.split(re.sub(r"\$\([^)]*\)", "20261127T030000Z", script))


def ductile_argv(words: list[str]) -> list[str]:
    assert words[0] == BINARY, f"the service runs {words[0]}, not the installed {BINARY}"
    return words[1:]


def backup_registered() -> bool:
    from ductile.cli.system import app as system_app

    return "backup" in system_app


def test_the_unit_starts_the_gateway_in_the_foreground_on_the_system_config_dir() -> None:
    service = unit_sections(UNIT)["Service"]
    (exec_start,) = service["ExecStart"]
    name, args = parse_cli(ductile_argv(shlex.split(exec_start)))
    assert name == "start"
    assert Path(str(args["config"])) == SYSTEM_CONFIG_DIR
    assert service["Type"] == ["simple"]  # `system start` does not fork
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP reloads (§2)
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["Restart"] == ["on-failure"]  # exit 1 on a component failure restarts it


def test_the_unit_lets_the_gateway_write_its_config_dir_state_dir_pid_lock_and_socket() -> None:
    service = unit_sections(UNIT)["Service"]
    writable = [Path(p) for p in service["ReadWritePaths"][0].split()]
    assert service["ProtectSystem"] == ["strict"]  # everything else is read-only
    for needed in (SYSTEM_CONFIG_DIR, STATE_PATH.parent, pid_path(STATE_PATH).parent):
        assert any(needed == w or w in needed.parents for w in writable), needed
    # the stop budget covers the default shutdown_grace (30s) + the SIGTERM → 5s → SIGKILL ladder
    assert int(service["TimeoutStopSec"][0]) >= 30 + 5


def test_the_backup_unit_runs_system_backup_on_the_same_config_and_a_daily_timer() -> None:
    service = unit_sections(BACKUP_UNIT)["Service"]
    assert service["Type"] == ["oneshot"]
    words = shlex.split(service["ExecStart"][0])
    assert words[:2] == ["/bin/sh", "-c"]
    inner = shell_words(words[2].replace("%%", "%"))  # systemd unescapes %% before sh sees it
    assert inner[0] == "exec"
    argv = ductile_argv(inner[1:])
    assert argv[:2] == ["system", "backup"]
    assert argv[argv.index("--config") + 1] == str(SYSTEM_CONFIG_DIR)
    assert argv[argv.index("--scope") + 1] == "config"
    assert argv[argv.index("--to") + 1].endswith(".tar.gz")
    timer = unit_sections(BACKUP_TIMER)
    assert timer["Timer"] == {"OnCalendar": ["daily"], "Persistent": ["true"]}
    assert timer["Install"] == {"WantedBy": ["timers.target"]}
    if not backup_registered():
        pytest.skip("`system backup` is not registered on this branch yet")
    name, args = parse_cli(argv)
    assert name == "backup"
    assert args["scope"] == "config"


def test_the_launch_agent_starts_the_gateway_and_restarts_it_only_after_a_failure() -> None:
    agent = plistlib.loads(AGENT.read_bytes())
    argv = agent["ProgramArguments"]
    assert Path(argv[0]).is_absolute() and Path(argv[-1]).is_absolute()
    name, args = parse_cli(ductile_argv(argv))
    assert name == "start"
    assert args["config"] == argv[-1]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # exit 0 = a graceful stop: stay stopped
    assert agent["StandardOutPath"]  # the JSON log


def test_the_backup_agent_runs_the_same_backup_command_on_a_calendar_interval() -> None:
    agent = plistlib.loads(BACKUP_AGENT.read_bytes())
    gateway = plistlib.loads(AGENT.read_bytes())
    assert agent["StartCalendarInterval"]
    sh, flag, script = agent["ProgramArguments"]
    assert (sh, flag) == ("/bin/sh", "-c")
    argv = ductile_argv(shell_words(script)[1:])
    assert argv[:2] == ["system", "backup"]
    assert argv[argv.index("--config") + 1] == gateway["ProgramArguments"][-1]  # the gateway's config dir
    if backup_registered():
        assert parse_cli(argv)[0] == "backup"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", [UNIT, BACKUP_UNIT, BACKUP_TIMER], ids=lambda p: p.name)
def test_systemd_analyze_verifies_the_unit(unit: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at a stand-in for the installed one.
    stand_in = tmp_path / "ductile"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    copies = []
    for source in (UNIT, BACKUP_UNIT, BACKUP_TIMER):
        copy = tmp_path / source.name
        copy.write_text(source.read_text().replace(BINARY, str(stand_in)))
        copies.append(copy)
    target = tmp_path / unit.name
    done = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ductile" not in done.stderr, done.stderr  # warnings about our unit count as failures
