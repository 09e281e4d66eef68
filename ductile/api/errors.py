"""The one error shape of the API: ``{"error": "<message>"}`` with a status code."""

from __future__ import annotations


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
