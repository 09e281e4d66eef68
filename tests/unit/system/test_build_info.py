"""``ductile version``'s commit (issue 20): the one a build recorded, else the checkout's HEAD, found
in a clone and in a ``git worktree`` alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductile.system import build_info
from ductile.system.build_info import BUILD_COMMIT_FILE, _commit, _git_commit

SHA = "3f9c2a1b7d4e" + "0" * 28


def clone(root: Path) -> Path:
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".git" / "refs" / "heads" / "main").write_text(SHA + "\n")
    (root / "pkg").mkdir()
    return root / "pkg"


def test_a_clone_names_its_head(tmp_path: Path) -> None:
    assert _git_commit(clone(tmp_path)) == SHA[:12]


def test_a_worktree_names_its_own_head_from_the_common_refs(tmp_path: Path) -> None:
    clone(tmp_path / "main")
    own = tmp_path / "main" / ".git" / "worktrees" / "wt"
    own.mkdir(parents=True)
    (own / "HEAD").write_text("ref: refs/heads/main\n")
    (own / "commondir").write_text("../..\n")
    (tmp_path / "wt" / "pkg").mkdir(parents=True)
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {own}\n")
    assert _git_commit(tmp_path / "wt" / "pkg") == SHA[:12]


def test_outside_a_checkout_the_commit_is_unknown(tmp_path: Path) -> None:
    assert _git_commit(tmp_path) == "unknown"


def test_the_commit_a_build_recorded_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUCTILE_COMMIT", raising=False)
    package = clone(tmp_path)
    (package / BUILD_COMMIT_FILE).write_text("a" * 40 + "\n")
    assert _commit(package) == "a" * 12
    monkeypatch.setenv("DUCTILE_COMMIT", "override")
    assert _commit(package) == "override"
    assert build_info.build_info()["commit"] == "override"
