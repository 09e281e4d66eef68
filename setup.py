"""The build records which commit it was made from (everything else is in pyproject.toml).

``ductile version`` prints the commit. In a checkout it reads .git; an installed wheel has no .git,
so the build writes the commit into the package as ``ductile/BUILD_COMMIT``. An sdist built from git
carries the file too, so a wheel built from that sdist (``python -m build`` does exactly that)
still knows its commit. A build from neither writes nothing and the version says ``unknown``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
COMMIT_FILE = Path("ductile") / "BUILD_COMMIT"


def git_commit() -> str | None:
    """HEAD of the checkout being built, or None outside one (an unpacked sdist)."""
    if not (HERE / ".git").exists():
        return None
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"not recording the commit: git rev-parse failed: {done.stderr.strip()}")
        return None
    return done.stdout.strip()


def write_commit(root: Path) -> None:
    commit = git_commit()
    if commit is None and (HERE / COMMIT_FILE).is_file():  # building from an sdist that carries it
        commit = (HERE / COMMIT_FILE).read_text().strip()
    if commit:
        target = root / COMMIT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(commit + "\n")


class BuildPyWithCommit(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads .git itself
            write_commit(Path(self.build_lib))


class SdistWithCommit(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        write_commit(Path(base_dir))


setup(cmdclass={"build_py": BuildPyWithCommit, "sdist": SdistWithCommit})
