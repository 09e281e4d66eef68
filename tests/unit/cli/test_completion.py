"""Shell completion (issue 20, cli.md §2.1): the bash script completes every noun and every verb of
each, as bash itself runs it; ``--install-completion`` puts the script where each shell looks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cyclopts import App

from ductile.cli.completion import script
from ductile.cli.main import app, run

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def groups(node: App = app, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    """Every noun (and sub-noun) with the words that may follow it: its verbs."""
    names = {name for name in node if not name.startswith("-")}
    if path and not names:
        return {}
    out = {path: names}
    for name in names:
        out |= groups(node[name], (*path, name))
    return out


def bash_offers(script_file: Path, lines: list[tuple[str, ...]]) -> list[set[str]]:
    """What bash offers after ``ductile WORDS <TAB>`` for each of ``lines``, in one bash with the script sourced."""
    program = [f"source {script_file}"]
    for words in lines:
        program += [f"COMP_WORDS=(ductile {' '.join(words)} '')", f"COMP_CWORD={len(words) + 1}", "_ductile",
                    "printf '%s\\n' \"${COMPREPLY[@]}\" ---"]
    done = subprocess.run(["bash", "--norc", "-c", "\n".join(program)], capture_output=True, text=True, timeout=30,
                          check=True)
    return [set(chunk.split()) for chunk in done.stdout.split("---\n")[: len(lines)]]


def test_bash_completes_the_nouns_and_the_verbs_of_each(tmp_path: Path) -> None:
    script_file = tmp_path / "ductile.bash"
    script_file.write_text(script("bash"))
    tree = groups()
    assert {"system", "job", "plugin", "config", "vault", "version", "completion"} <= tree[()]
    assert {("system",), ("config", "token"), ("vault",)} <= set(tree)
    paths = sorted(tree)
    for path, offered in zip(paths, bash_offers(script_file, paths), strict=True):
        assert tree[path] <= offered, f"ductile {' '.join(path)} <TAB> offers {sorted(offered)}"
    assert {"start", "stop", "status"} <= tree[("system",)]


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "SHELL": "/bin/bash"}
    return subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_completion_prints_each_shells_script_and_refuses_another(capsys: pytest.CaptureFixture[str]) -> None:
    assert script("zsh").startswith("#compdef ductile") and "complete -c ductile" in script("fish")
    with pytest.raises(SystemExit) as printed:
        run(["completion", "bash"])
    assert printed.value.code == 0
    assert capsys.readouterr().out == script("bash")
    with pytest.raises(SystemExit) as refused:
        run(["completion", "tcsh"])
    assert refused.value.code == 1
    assert capsys.readouterr().err.strip() == "error: unknown shell 'tcsh': choose one of bash, zsh, fish"


def test_install_completion_writes_where_bash_looks_and_sources_it(tmp_path: Path) -> None:
    done = cli("--install-completion", "--shell", "bash", home=tmp_path)
    assert done.returncode == 0, done.stderr
    installed = tmp_path / ".local" / "share" / "bash-completion" / "completions" / "ductile"
    assert installed.read_text() == script("bash")
    assert str(installed) in (tmp_path / ".bashrc").read_text()
    assert bash_offers(installed, [()])[0] >= {"system", "vault"}
