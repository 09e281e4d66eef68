"""One vocabulary (ARCHITECTURE.md §2, "one home per policy"): the terminal set, the SQL that
names statuses and the job decider agree with ``ductile.vocabulary``, and the StrEnums leave the
bytes of the log and of the API exactly as plain strings wrote them."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

import ductile
from ductile.commands import jobs
from ductile.commands.errors import InvalidTransition
from ductile.events import codec
from ductile.events.types import BreakerTransitioned, JobDead, JobDeduped, JobFailed
from ductile.projections import analytics_queries, job_queries
from ductile.vocabulary import (
    FAILURES,
    OUTSTANDING,
    OUTSTANDING_SQL,
    TERMINAL,
    TERMINAL_SQL,
    AttemptOutcome,
    CircuitState,
    DeadOutcome,
    DedupeReason,
    JobStatus,
    ScheduleStatus,
    in_order,
    sql_in,
)

ROOT = Path(ductile.__file__).parent
T0 = 1_700_000_000 * 1_000_000_000


def test_every_status_is_terminal_or_outstanding_never_both() -> None:
    assert set(JobStatus) == TERMINAL | OUTSTANDING
    assert not TERMINAL & OUTSTANDING
    assert FAILURES < TERMINAL and JobStatus.SUCCEEDED not in FAILURES


def test_the_sets_in_sql_are_the_sets_in_code() -> None:
    assert TERMINAL_SQL == "('succeeded','failed','timed_out','dead','skipped')"
    assert OUTSTANDING_SQL == "('queued','running')"
    assert sql_in(TERMINAL) == sql_in(reversed(in_order(TERMINAL)))  # the order is the enum's, not the set's


def _sql_literals() -> list[tuple[str, str, str]]:
    """(file, column, quoted values) for each status literal written into SQL under ductile/."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"\b(status|state)\s*(=|IN)\s*(\('[a-z_']+(?:,\s*'[a-z_]+')*\)|'[a-z_]+')", text):
            found.append((str(path.relative_to(ROOT)), m.group(1), m.group(3)))
    return found


def test_every_status_literal_in_sql_is_a_member_of_its_enum() -> None:
    literals = _sql_literals()
    assert literals, "the scan found no SQL status literal: the pattern is out of date"
    known = {"status": {s.value for s in JobStatus} | {s.value for s in ScheduleStatus},
             "state": {s.value for s in CircuitState}}
    for where, column, quoted in literals:
        values = set(re.findall(r"'([a-z_]+)'", quoted))
        assert values <= known[column], (where, quoted)
        if len(values) > 1:  # a written-out IN list: it must be one of the named sets
            assert values in (set(TERMINAL), set(OUTSTANDING)), (where, quoted)


def _job(status: JobStatus) -> jobs.JobState:
    return jobs.JobState(job_id="j", plugin="p", command="poll", status=status, attempt=1, max_attempts=2,
                         submitted_by="test", created_at=T0, started_at=T0 if status != JobStatus.QUEUED else None)


@pytest.mark.parametrize("status", list(JobStatus))
def test_the_decider_treats_exactly_the_terminal_set_as_final(status: JobStatus) -> None:
    job = _job(status)
    kill = jobs.KillJob(job_id="j", reason="cancelled by user", error="cancelled")
    if status in TERMINAL:
        with pytest.raises(InvalidTransition):
            jobs.decide(kill, job, T0)
    else:
        (dead,) = jobs.decide(kill, job, T0)
        assert jobs.evolve(job, dead).status == JobStatus.DEAD


def test_the_analytics_summary_keys_keep_their_order() -> None:
    assert analytics_queries.TERMINAL_STATUSES == ("succeeded", "failed", "timed_out", "dead", "skipped")
    assert job_queries.STATUSES == ("queued", "running", "succeeded", "failed", "timed_out", "dead", "skipped")


ENUM_TYPED = [
    JobFailed(job_id="j", attempt=2, status=JobStatus.TIMED_OUT, outcome=AttemptOutcome.TIMEOUT, error="slow",
              reason="attempts_exhausted", at=T0),
    JobDead(job_id="j", attempt=1, from_status=JobStatus.RUNNING, reason="cancelled by user", error="x",
            outcome=DeadOutcome.CANCELLED, at=T0),
    JobDeduped(plugin="p", command="c", submitted_by="s", dedupe_key="k", dedupe_reason=DedupeReason.OUTSTANDING,
               existing_job_id="j", at=T0),
    BreakerTransitioned(plugin="p", command="c", from_state=CircuitState.CLOSED, to_state=CircuitState.OPEN,
                        failure_count=3, reason="failure_threshold", at=T0),
]


@pytest.mark.parametrize("event", ENUM_TYPED, ids=lambda e: type(e).__name__)
def test_an_enum_field_encodes_as_its_string(event: msgspec.Struct) -> None:
    plain = msgspec.structs.replace(event, **{
        f.name: str(v) for f in msgspec.structs.fields(event)
        if isinstance(v := getattr(event, f.name), str) and type(v) is not str
    })
    assert codec.encode(event) == codec.encode(plain)  # type: ignore[arg-type]
    assert msgspec.json.encode(event) == msgspec.json.encode(plain)
    back = codec.decode(codec.type_name(event), 1, codec.encode(event))  # type: ignore[arg-type]
    assert back == event


def test_a_status_from_sql_compares_equal_to_its_member() -> None:
    assert JobStatus.SUCCEEDED == "succeeded" and "succeeded" in TERMINAL
    assert f"{JobStatus.TIMED_OUT}" == "timed_out" and str(JobStatus.TIMED_OUT) == "timed_out"
