"""The order in which test files reach the xdist workers: the longest first.

``make test`` runs two workers with ``--dist loadfile`` (a file's tests stay in one worker). xdist
hands files out in collection order (with ``--no-loadscope-reorder``; its default reorders by the
number of tests, which says nothing of their time): a long file collected last leaves one worker
idle while the other finishes it. Handing out the longest first (the classic longest-processing-
time rule) ends both workers together. The seconds come from a recorded run
(``file_seconds.json``); a file without a record counts as the median, so a new test file lands in
the middle, not at the end. Within a file the order is untouched: some files' tests rely on it.

Refresh the record after a run with ``--junitxml``::

    python -m tests.file_order report.xml
"""

from __future__ import annotations

import json
import statistics
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

RECORD = Path(__file__).with_name("file_seconds.json")


class _Item(Protocol):
    nodeid: str


T = TypeVar("T", bound=_Item)


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def load_seconds(path: Path = RECORD) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def longest_first(items: Sequence[T], seconds: Mapping[str, float]) -> list[T]:
    """``items`` grouped by file, files by recorded seconds (longest first, unknown at the
    median, ties in collection order), each file's items in their own order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(file_of(item.nodeid), []).append(item)
    default = statistics.median(seconds.values()) if seconds else 0.0
    ranked = sorted(enumerate(groups), key=lambda pair: (-seconds.get(pair[1], default), pair[0]))
    return [item for _, name in ranked for item in groups[name]]


def seconds_from_junit(report: Path) -> dict[str, float]:
    """Each file's seconds (its tests' setup, call and teardown) from a ``--junitxml`` report."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        totals[_test_file(case, name)] += float(case.get("time") or 0.0)
    return {name: round(total, 1) for name, total in sorted(totals.items())}


def _test_file(case: ET.Element, name: str) -> str:
    # junit's classname is the module path, dotted, plus the class for a test in a class.
    if case.get("file"):
        return name
    parts = case.get("classname", "").split(".")
    while parts and not Path(*parts).with_suffix(".py").exists():
        parts.pop()
    return str(Path(*parts).with_suffix(".py")) if parts else name


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.file_order REPORT.xml")
    RECORD.write_text(json.dumps(seconds_from_junit(Path(sys.argv[1])), indent=1) + "\n")
    print(f"wrote {RECORD}")
