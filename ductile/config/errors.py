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


class ConfigErrors(ConfigError):
    """Several load errors found in one load (config.md §5: reported together, each with its
    ``file:line:``). ``str()`` is one error per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))

    def __str__(self) -> str:
        return self.message


def raise_collected(errors: list[ConfigError]) -> None:
    """Raise the one error as itself, several as ConfigErrors; nothing when the list is empty."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
