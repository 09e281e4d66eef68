"""A result the job's state refuses is logged at the level its cause deserves, with the reason:
only a job cancelled while it ran is expected to refuse one (issue 10 item 6)."""

from __future__ import annotations

import logging

import pytest

from ductile.commands.errors import InvalidTransition, JobNotFound, Refused
from ductile.runtime.dispatcher import log_refused_result


def _logged(caplog: pytest.LogCaptureFixture, exc: Refused) -> logging.LogRecord:
    caplog.set_level(logging.DEBUG, logger="ductile")
    log_refused_result("j1", exc)
    [record] = caplog.records
    return record


def test_the_result_of_a_job_cancelled_while_it_ran_is_discarded_at_info(caplog: pytest.LogCaptureFixture) -> None:
    record = _logged(caplog, InvalidTransition("CompleteAttempt", "dead"))
    assert record.levelno == logging.INFO and "cancelled" in record.getMessage()
    assert record.fields == {"job_id": "j1", "reason": "CompleteAttempt is not allowed for a job in state dead"}  # type: ignore[attr-defined]


def test_a_job_that_vanished_is_an_error_not_a_cancellation(caplog: pytest.LogCaptureFixture) -> None:
    record = _logged(caplog, JobNotFound("j1"))
    assert record.levelno == logging.ERROR and "cancelled" not in record.getMessage()
    assert record.fields == {"job_id": "j1", "refusal": "JobNotFound", "reason": "job not found: j1"}  # type: ignore[attr-defined]


def test_a_result_refused_by_a_job_in_any_other_state_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    record = _logged(caplog, InvalidTransition("CompleteAttempt", "succeeded"))
    assert record.levelno == logging.ERROR
    assert record.fields["refusal"] == "InvalidTransition"  # type: ignore[attr-defined]
    assert record.fields["reason"] == "CompleteAttempt is not allowed for a job in state succeeded"  # type: ignore[attr-defined]
