"""The tree passes ``ruff check`` (the rules of pyproject.toml's ``[tool.ruff.lint]``), so a change
that leaves a lint error behind fails CI, not only a ``make lint`` someone remembered to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing_in_the_code_the_tests_and_the_benches() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "ductile", "tests", "bench"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
