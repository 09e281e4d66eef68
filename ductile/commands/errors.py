"""Domain errors a decider raises when it refuses a command."""

from __future__ import annotations


class Refused(Exception):
    """Base of every refusal; ``str(e)`` is safe to show a user."""


class InvalidTransition(Refused):
    def __init__(self, what: str, status: str | None) -> None:
        super().__init__(f"{what} is not allowed for a job in state {status or 'none'}")
        self.what = what
        self.status = status


class JobNotFound(Refused):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job not found: {job_id}")
        self.job_id = job_id


class AlreadyExists(Refused):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job already exists: {job_id}")
        self.job_id = job_id


class PipelineInputRefused(Refused):
    """A pipeline trigger whose payload the entry step's baggage claims cannot accept."""

    def __init__(self, pipeline: str, reason: str) -> None:
        super().__init__(reason)
        self.pipeline = pipeline


class PayloadTooLarge(Refused):
    """A pipeline trigger whose entry context would exceed the context cap."""

    def __init__(self, pipeline: str, size: int, limit: int) -> None:
        super().__init__("pipeline baggage exceeds maximum context size")
        self.pipeline = pipeline
        self.size = size
        self.limit = limit
