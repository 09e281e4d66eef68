"""The one exception the config layer raises."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration that cannot be loaded.

    ``str(error)`` is the user-facing message, prefixed with ``<file>:`` or ``<file>:<line>:``
    when the location is known.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{location_prefix(self.file, self.line)}{self.message}"


def location_prefix(file: str | None, line: int | None) -> str:
    """``"config.yaml:14: "``, ``"config.yaml: "`` or ``""``."""
    if not file:
        return ""
    if line is None:
        return f"{file}: "
    return f"{file}:{line}: "
