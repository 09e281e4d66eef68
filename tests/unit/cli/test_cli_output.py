"""Human output (cli.md §1): aligned tables with upper-case headers and ``-`` for empty cells,
colour only on a TTY without ``NO_COLOR``, progress bars on a TTY stderr only and never with ``--json``."""

from __future__ import annotations

import io
import re
import sys
import time

import pytest

from ductile.cli import output
from ductile.cli.output import heading, print_check, print_table, table
from ductile.cli.progress import PlainProgress, ProgressBar, progress_bar, progress_lines

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HEADERS = ["job_id", "plugin", "status"]
ROWS = [["abc", None, "succeeded"], ["abcdef", "", 3], ["[red]x[/red]", ":smile:", "-"]]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch: pytest.MonkeyPatch) -> Tty:
    """A colour terminal on stdout, wide enough that no row wraps. Called in the test body: pytest
    puts its own capture back on sys.stdout after fixtures have run."""
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "200")
    return tty


def test_plain_table_pins_the_layout() -> None:
    assert table(HEADERS, ROWS).splitlines() == [
        "JOB_ID        PLUGIN   STATUS",
        "abc           -        succeeded",
        "abcdef        -        3",
        "[red]x[/red]  :smile:  -",
    ]


def test_a_pipe_gets_the_plain_table(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(HEADERS, ROWS)
    assert capsys.readouterr().out == table(HEADERS, ROWS) + "\n"


def test_a_terminal_gets_the_same_columns_with_styled_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    print_table(HEADERS, ROWS)
    drawn = terminal.getvalue()
    assert "\x1b[1m" in drawn  # bold headers: the one thing a terminal adds
    # Cells are data: rich markup and emoji codes in them print as written.
    assert [line.rstrip() for line in ANSI.sub("", drawn).splitlines()] == table(HEADERS, ROWS).splitlines()


def test_no_color_keeps_a_terminal_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    print_table(HEADERS, ROWS)
    heading("Transitions", gap=True)
    assert terminal.getvalue() == table(HEADERS, ROWS) + "\n\nTransitions\n"


def test_an_empty_no_color_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "")
    assert output.colour_enabled() and terminal.getvalue() == ""


def test_heading_on_a_terminal_is_the_title_in_bold(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    heading("Job [1]")
    drawn = terminal.getvalue()
    assert "\x1b[1m" in drawn and ANSI.sub("", drawn) == "Job [1]\n"


def test_no_progress_bar_with_json_or_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar("rebuilding") is None
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_bar("rebuilding", json=True) is None
    assert isinstance(progress_bar("rebuilding"), ProgressBar)


def test_progress_bar_draws_on_stderr_and_finishes_at_total(monkeypatch: pytest.MonkeyPatch) -> None:
    err, out = Tty(), Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "120")
    bar = ProgressBar("catching up projections")
    assert err.getvalue() == ""  # nothing is drawn before the first report
    bar(1, 3)
    bar(3, 3)
    drawn = ANSI.sub("", err.getvalue())
    assert "catching up projections" in drawn and "3/3 events" in drawn and "100%" in drawn
    finished = err.getvalue()
    bar(3, 3)  # a report after the end draws nothing more
    bar.close()
    assert err.getvalue() == finished
    assert out.getvalue() == ""  # stdout never carries a bar


def test_progress_bar_closed_midway_gives_the_terminal_back(monkeypatch: pytest.MonkeyPatch) -> None:
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    with ProgressBar("rebuilding") as bar:
        bar(1, 10)
    drawn = err.getvalue()
    assert "1/10 events" in ANSI.sub("", drawn) and "0/?" not in ANSI.sub("", drawn)
    assert drawn.startswith("\x1b[?25l") and drawn.endswith("\x1b[?25h")  # the cursor is shown again
    bar(5, 10)  # after close: ignored, no second bar
    assert err.getvalue() == drawn


@pytest.mark.parametrize(("word", "path", "detail", "line"), [
    ("OK", None, None, "- config: OK"),
    ("FAIL", "/x/state.db", "locked", "- config: FAIL (path=/x/state.db) - locked"),
    ("SKIP", None, "", "- config: SKIP - "),
])
def test_checklist_lines(
    word: str, path: str | None, detail: str | None, line: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_check("config", word, path=path, detail=detail)
    assert capsys.readouterr().out == line + "\n"
    terminal = on_terminal(monkeypatch)
    print_check("config", word, path=path, detail=detail)
    assert ANSI.sub("", terminal.getvalue()) == line + "\n" and "\x1b[" in terminal.getvalue()


def test_progress_bar_shows_a_rate_and_an_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("COLUMNS", "160")
    with ProgressBar("selfcheck") as bar:
        for done in (1000, 2000, 3000):  # the rate needs two reports after the first
            bar(done, 1_000_000)
            time.sleep(0.02)
        drawn = ANSI.sub("", err.getvalue())
    assert re.search(r"[\d,]+/s", drawn), drawn
    assert re.search(r"\d:\d\d:\d\d", drawn), drawn  # the time remaining


def test_without_a_terminal_long_replays_print_plain_lines_on_stderr_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_lines("rebuilding"), PlainProgress)  # piped: lines, not a bar
    monkeypatch.setattr(sys, "stderr", Tty())
    assert isinstance(progress_lines("rebuilding", json=True), PlainProgress)
    assert isinstance(progress_lines("rebuilding"), ProgressBar)
    monkeypatch.undo()
    now = [0.0]
    lines = PlainProgress("rebuilding", every=10, clock=lambda: now[0])
    for done, at in ((5000, 1), (10_000, 3), (60_000, 11), (70_000, 12), (105_000, 21)):
        now[0] = at
        lines(done, 305_000)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [  # one line every 10 s; the rate counts from the first report
        "rebuilding: 60000/305000 events (20%), 5,500/s, ETA 45s",
        "rebuilding: 105000/305000 events (34%), 5,000/s, ETA 40s",
    ]


def test_plain_progress_restarts_its_rate_on_a_second_pass(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    lines = PlainProgress("selfcheck", every=1, clock=lambda: now[0])
    for done, at in ((100, 0), (1000, 2), (50, 3), (250, 5)):  # the chain, then the replay from 0
        now[0] = at
        lines(done, 1000)
    assert capsys.readouterr().err.splitlines() == [
        "selfcheck: 1000/1000 events (100%), 450/s, ETA 0s",
        "selfcheck: 250/1000 events (25%), 100/s, ETA 8s",
    ]
