"""requirements.lock is what every install uses (issue 20): it must still be what pyproject.toml declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.lockfile import LOCK, PYPROJECT, RUNTIME_LOCK, declared, digest, normalise, pins, recorded, stamp

RELOCK = "pyproject.toml changed since the lock was written: run 'make lock' and commit requirements*.lock"


def test_both_locks_were_written_from_this_pyproject() -> None:
    assert recorded(LOCK) == digest(), RELOCK
    assert recorded(RUNTIME_LOCK) == digest(), RELOCK


def test_every_declared_requirement_is_pinned_within_its_bounds() -> None:
    full, runtime = pins(LOCK), pins(RUNTIME_LOCK)
    data = tomllib.loads(PYPROJECT.read_text())
    for line in declared():
        section, text = line.split(": ", 1)
        req = Requirement(text)
        name = normalise(req.name)
        assert name in full, f"{text} ({section}) is not in {LOCK.name}: {RELOCK}"
        assert req.specifier.contains(full[name], prereleases=True), f"{LOCK.name} pins {name}=={full[name]}, outside {text}"
        if section == "dependencies":
            assert runtime.get(name) == full[name], f"{RUNTIME_LOCK.name} and {LOCK.name} disagree on {name}"
    assert set(runtime) <= set(full), "the runtime lock pins what the full lock does not"
    assert data["project"]["dependencies"], "no runtime dependencies declared"


def test_every_runtime_dependency_is_bounded_below_its_next_major() -> None:
    for text in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        uppers = [s for s in Requirement(text).specifier if s.operator in {"<", "<="}]
        assert uppers, f"{text} has no upper bound: a new major would install by chance"


def test_a_dependency_added_removed_or_rebounded_changes_the_digest(tmp_path: Path) -> None:
    text = PYPROJECT.read_text()
    variants = {
        "added": text.replace('    "httpx>=', '    "tomli-w>=1.0,<2",\n    "httpx>='),
        "removed": text.replace('    "croniter>=7.0,<8",\n', ""),
        "rebounded": text.replace('"cyclopts>=5.5,<6"', '"cyclopts>=5.5,<7"'),
    }
    for what, changed in variants.items():
        assert changed != text, what
        edited = tmp_path / f"{what}.toml"
        edited.write_text(changed)
        assert digest(edited) != digest(), f"a dependency {what} leaves the digest as it was"
    # ...while a change elsewhere in pyproject.toml does not ask for a re-lock.
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(text.replace("timeout = 300", "timeout = 301"))
    assert digest(elsewhere) == digest()


def test_stamping_replaces_the_digest_line(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# pyproject-requirements-sha256: stale\nfoo==1.0 \\\n    --hash=sha256:00\n")
    stamp(lock)
    assert recorded(lock) == digest()
    assert lock.read_text().count("pyproject-requirements-sha256") == 1
    assert pins(lock) == {"foo": "1.0"}
