"""The shape limits on JSON that comes from outside: request bodies and stored plugin output.

A shared leaf (imports nothing of Ductile), so the API and the projections' readers apply the same
limits. Decoders and encoders recurse once per nesting level, and Python stops at about 1,000
levels with a ``RecursionError``: text nested that deep must be refused (a request) or kept as
text (a plugin's stored output) before it reaches a decoder, not crash the request handling it.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

MAX_DEPTH = 128
"""Deepest nesting accepted, counting every object and array (``{"a": [1]}`` is 2 levels).
Far below the interpreter's recursion limit, so the stack a handler, an encoder or a template walk
already uses never matters; far above any real payload."""

INT_MIN, INT_MAX = -(2**63), 2**64 - 1
"""The integers the event log's codec (msgpack) can store: int64 or uint64."""

_decoder = msgspec.json.Decoder()
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
# An integer that may not fit in 64 bits has at least 19 digits; rarer text skips the exact walk.
_LONG_DIGITS = re.compile(rb"\d{19}")


class TooDeep(ValueError):
    """JSON text nests deeper than ``MAX_DEPTH``."""


class IntTooWide(ValueError):
    """A decoded integer the event log cannot store; ``path`` is where it is (``$.payload.n``)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def nests_deeper_than(text: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a decoder could nest deeper than ``limit`` on ``text``, decided without one.

    Every step runs at C speed: drop escapes and strings, keep the brackets, and take the highest
    running count of opens minus closes. For JSON that is its nesting depth; for text that is not
    JSON it bounds how deep a decoder gets before it meets the first error.
    """
    brackets = text.translate(None, _NOT_BRACKET)
    if len(brackets) <= limit:  # the common case: too few brackets to nest that deep
        return False
    # Only strings hold escapes. Dropping escaped backslashes first leaves exactly the escaped quotes.
    text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside_strings = b"".join(text.split(b'"')[::2])
    steps = memoryview(outside_strings.translate(_STEP, _NOT_BRACKET)).cast("b")
    return max(accumulate(steps), default=0) > limit


def decode(text: bytes | str) -> Any:
    """Decode JSON text from outside. Raises ``TooDeep``, or ``msgspec.DecodeError`` for text
    that is not JSON."""
    raw = text.encode() if isinstance(text, str) else text
    if nests_deeper_than(raw):
        raise TooDeep()
    try:
        return _decoder.decode(raw)
    except RecursionError:  # belt and braces: the bracket count above should make this unreachable
        raise TooDeep() from None


def first_wide_int(value: Any, root: str = "$") -> str | None:
    """Where the first integer in ``value`` outside ``INT_MIN..INT_MAX`` is (``$.payload.n``; with
    ``root=""``, ``state_updates.n``), or ``None``. Iterative: the value may nest deeply."""
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif type(item) is int and not INT_MIN <= item <= INT_MAX:
            return path
    return None


def check_int_width(value: Any, text: bytes) -> None:
    """Raise ``IntTooWide`` for the first integer in ``value`` (decoded from ``text``) outside
    ``INT_MIN..INT_MAX``."""
    if not _LONG_DIGITS.search(text):
        return
    path = first_wide_int(value)
    if path is not None:
        raise IntTooWide(path)
