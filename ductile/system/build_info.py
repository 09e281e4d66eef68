"""Version, commit and build time, found without importing anything heavy."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import ductile


def _git_commit(start: Path) -> str:
    for parent in (start, *start.parents):
        git = parent / ".git"
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text().strip()
                if head.startswith("ref: "):
                    ref = head[5:]
                    ref_file = git / ref
                    if ref_file.exists():
                        return ref_file.read_text().strip()[:12]
                    packed = git / "packed-refs"
                    if packed.exists():
                        for line in packed.read_text().splitlines():
                            if line.endswith(" " + ref):
                                return line.split()[0][:12]
                    return "unknown"
                return head[:12]
            except OSError:
                return "unknown"
    return "unknown"


def build_info() -> dict[str, str]:
    package_dir = Path(ductile.__file__).resolve().parent
    commit = os.environ.get("DUCTILE_COMMIT") or _git_commit(package_dir)
    built = datetime.fromtimestamp(package_dir.joinpath("__init__.py").stat().st_mtime, UTC)
    return {
        "version": ductile.__version__,
        "commit": commit,
        "build_time": built.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
