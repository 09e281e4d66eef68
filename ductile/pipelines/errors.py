"""Load-time errors that list every problem found, one per line (pipelines.md §2).

A config load reports every error, not only the first, so a compiler collects its problems and
raises them together. Each problem is already pointer-prefixed (``if.all[1].op: ...``); the
config loader only adds ``pipeline "<name>" step "<id>": `` in front of each line.
"""

from __future__ import annotations

from collections.abc import Iterable


class LoadProblems(ValueError):
    """One or more load-time problems; ``str()`` gives one problem per line."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(self.problems))
