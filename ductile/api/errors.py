"""The one error shape of the API: ``{"error": "<message>"}`` with a status code."""

from __future__ import annotations

from typing import Any

from ductile.system.logs import Log

log = Log("api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def forbidden() -> ApiError:
    return ApiError(403, "insufficient scope")


def internal(message: str, exc: BaseException, **fields: Any) -> ApiError:
    """A 500 with ``message``. The fault is logged here, once, with its traceback and the request
    id; the answer never carries one (api.md §1)."""
    log.error(message, exc=exc, **fields)
    return ApiError(500, message)
