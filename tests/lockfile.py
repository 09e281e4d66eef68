"""requirements.lock against pyproject.toml: what was declared when the lock was last written.

``make lock`` runs pip-compile, then ``python -m tests.lockfile`` stamps the lock with a digest of
every requirement pyproject.toml declares (runtime, each extra, the build backend's). A dependency
added, removed or re-bounded in pyproject.toml without ``make lock`` changes the digest, and
tests/unit/test_lockfile.py fails saying so.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "requirements.lock"
RUNTIME_LOCK = REPO / "requirements-runtime.lock"
STAMP = "# pyproject-requirements-sha256: "
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", re.M)


def declared(pyproject: Path = PYPROJECT) -> list[str]:
    """Every requirement string pyproject.toml declares, each under the section that declares it."""
    data = tomllib.loads(pyproject.read_text())
    out = [f"build-system: {r}" for r in data["build-system"]["requires"]]
    out += [f"dependencies: {r}" for r in data["project"]["dependencies"]]
    for extra, reqs in sorted(data["project"].get("optional-dependencies", {}).items()):
        out += [f"{extra}: {r}" for r in reqs]
    return out


def digest(pyproject: Path = PYPROJECT) -> str:
    return hashlib.sha256("\n".join(sorted(declared(pyproject))).encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    """The digest the lock was stamped with, or None when it carries none."""
    for line in lock.read_text().splitlines():
        if line.startswith(STAMP):
            return line.removeprefix(STAMP).strip()
    return None


def pins(lock: Path) -> dict[str, str]:
    """``{normalised name: version}`` of every ``name==version`` line of a lock."""
    return {normalise(name): version for name, version in PIN.findall(lock.read_text())}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stamp(lock: Path, pyproject: Path = PYPROJECT) -> None:
    """Put (or replace) the digest line at the top of ``lock``."""
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(STAMP)]
    lock.write_text("\n".join([STAMP + digest(pyproject), *lines]) + "\n")


if __name__ == "__main__":
    for path in sys.argv[1:] or [str(LOCK), str(RUNTIME_LOCK)]:
        stamp(Path(path))
