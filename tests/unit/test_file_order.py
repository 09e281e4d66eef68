"""The suite hands its longest files to the xdist workers first (tests/file_order.py)."""

from dataclasses import dataclass
from pathlib import Path

from tests.file_order import load_seconds, longest_first, seconds_from_junit


@dataclass
class Item:
    nodeid: str


def ids(items: list[Item]) -> list[str]:
    return [i.nodeid for i in items]


def test_files_go_longest_first_and_keep_their_own_test_order() -> None:
    items = [Item("a.py::t1"), Item("b.py::t1"), Item("a.py::t2"), Item("c.py::t1"), Item("b.py::t2")]
    ordered = longest_first(items, {"a.py": 1.0, "b.py": 30.0, "c.py": 5.0})
    assert ids(ordered) == ["b.py::t1", "b.py::t2", "c.py::t1", "a.py::t1", "a.py::t2"]


def test_an_unrecorded_file_counts_as_the_median_and_ties_keep_collection_order() -> None:
    items = [Item("new.py::t"), Item("short.py::t"), Item("mid.py::t"), Item("long.py::t")]
    ordered = longest_first(items, {"short.py": 1.0, "mid.py": 5.0, "long.py": 9.0})
    assert ids(ordered) == ["long.py::t", "new.py::t", "mid.py::t", "short.py::t"]
    assert ids(longest_first(items, {})) == ids(items)


def test_a_junit_report_sums_each_files_tests(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.unit.test_file_order" name="a" time="1.5"/>'
        '<testcase classname="tests.unit.test_file_order" name="b" time="2.0"/>'
        '<testcase classname="tests.unit.test_lockfile" name="c" time="0.25"/>'
        '</testsuite></testsuites>'
    )
    assert seconds_from_junit(report) == {"tests/unit/test_file_order.py": 3.5, "tests/unit/test_lockfile.py": 0.2}


def test_the_record_names_files_that_exist() -> None:
    recorded = load_seconds()
    assert recorded, "tests/file_seconds.json is missing or empty"
    root = Path(__file__).parents[2]
    missing = [name for name in recorded if not (root / name).is_file()]
    assert len(missing) <= len(recorded) // 10, f"refresh tests/file_seconds.json: gone {missing}"
