"""Key paths and where each merged value came from, for message prefixes."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

KeyPath = tuple[str | int, ...]


class Location(msgspec.Struct, frozen=True):
    """A file (display name) and, when known, a 1-based line; for a scalar that took an
    environment value, also the text as written there (``https://${HOST}/x``)."""

    file: str
    line: int | None = None
    template: str | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


def dotted(path: Iterable[str | int]) -> str:
    """``("api", "auth", "tokens", 0, "token")`` → ``"api.auth.tokens[0].token"``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class Origins:
    """Key path → the location that provided the merged value."""

    def __init__(self) -> None:
        self._by_path: dict[KeyPath, Location] = {}
        # parent -> child paths, so that dropping a subtree costs the size of the subtree
        self._children: dict[KeyPath, set[KeyPath]] = {}

    def set(self, path: KeyPath, location: Location) -> None:
        self._by_path[path] = location
        child = path
        while child:
            siblings = self._children.setdefault(child[:-1], set())
            if child in siblings:
                break
            siblings.add(child)
            child = child[:-1]

    def drop_under(self, prefix: KeyPath) -> None:
        """Forget ``prefix`` and everything below it (the value was replaced)."""
        if prefix:
            self._children.get(prefix[:-1], set()).discard(prefix)
        pending = [prefix]
        while pending:
            path = pending.pop()
            self._by_path.pop(path, None)
            pending.extend(self._children.pop(path, ()))

    def exact(self, path: KeyPath) -> Location | None:
        return self._by_path.get(path)

    def nearest(self, path: KeyPath) -> Location | None:
        """The location of ``path`` or of its closest ancestor that has one."""
        for size in range(len(path), -1, -1):
            location = self._by_path.get(path[:size])
            if location is not None:
                return location
        return None

    def templates(self) -> dict[KeyPath, str]:
        """Key path -> the text as written, for every merged scalar that took an environment value."""
        return {path: location.template for path, location in self._by_path.items() if location.template is not None}

    def as_dotted(self) -> dict[str, str]:
        return {dotted(path): str(location) for path, location in self._by_path.items() if path}
