"""Version, commit and build time, found without importing anything heavy."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import ductile

# Written into an installed package by the build (setup.py), which has no .git to read.
BUILD_COMMIT_FILE = "BUILD_COMMIT"


def _git_dirs(checkout: Path) -> tuple[Path, Path] | None:
    """The checkout's git dir (its HEAD) and common dir (its refs): one directory in a clone, two
    in a ``git worktree``, whose ``.git`` is a file naming its own dir."""
    git = checkout / ".git"
    if git.is_dir():
        return git, git
    if git.is_file():
        text = git.read_text().strip()
        if text.startswith("gitdir: "):
            own = (checkout / text.removeprefix("gitdir: ")).resolve()
            common = own / "commondir"
            return own, (own / common.read_text().strip()).resolve() if common.is_file() else own
    return None


def _git_commit(start: Path) -> str:
    for parent in (start, *start.parents):
        try:
            dirs = _git_dirs(parent)
            if dirs is None:
                continue
            own, common = dirs
            head = (own / "HEAD").read_text().strip()
            if head.startswith("ref: "):
                ref = head[5:]
                for base in (own, common):
                    if (base / ref).exists():
                        return (base / ref).read_text().strip()[:12]
                packed = common / "packed-refs"
                if packed.exists():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + ref):
                            return line.split()[0][:12]
                return "unknown"
            return head[:12]
        except OSError:
            return "unknown"
    return "unknown"


def _commit(package_dir: Path) -> str:
    """The environment's override, else the commit the build recorded, else the checkout's HEAD."""
    if override := os.environ.get("DUCTILE_COMMIT"):
        return override
    recorded = package_dir / BUILD_COMMIT_FILE
    if recorded.is_file():
        return recorded.read_text().strip()[:12] or "unknown"
    return _git_commit(package_dir)


def build_info() -> dict[str, str]:
    package_dir = Path(ductile.__file__).resolve().parent
    built = datetime.fromtimestamp(package_dir.joinpath("__init__.py").stat().st_mtime, UTC)
    return {
        "version": ductile.__version__,
        "commit": _commit(package_dir),
        "build_time": built.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
