"""sqlite3 adapters for the values Ductile binds most often: ``None``, ``bytes`` and the
vocabulary's StrEnums.

sqlite3 binds an exact ``int``, ``float``, ``str`` or ``bytearray`` directly; any other value
(``None``; ``bytes``: every event's id, data and chain; a ``StrEnum`` member, a ``str`` subclass)
goes through its adaptation protocol first, and with no adapter registered that is a failed
``__adapt__`` lookup and a failed ``__conform__`` lookup, each formatting an ``AttributeError``
(≈3,000 instructions per value). The writer binds several per statement (every NULL column of a
new job row, every status, three blobs per event), the rebuild millions. A registered adapter is
one dict lookup and a C call.

sqlite3's adapter registry belongs to the process, not to a connection: these apply to every
sqlite3 connection of the process (writer, readers, aiosqlite, the rebuild's fold). They bind
exactly what sqlite3 bound without them (NULL; the same object, as ``bytes`` returns an exact
``bytes`` unchanged; the member's own text, as ``str`` gives it), so no statement anywhere sees
another value. None of them is a base type (``int``, ``float``, ``str``, ``bytearray``), which
would make sqlite3 adapt every value. PostgreSQL (psycopg) has its own adaptation and never
looks here.
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum

from ductile import vocabulary

_NONE = type(None)


def _vocabulary_enums() -> list[type[StrEnum]]:
    return [
        value for value in vars(vocabulary).values()
        if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
    ]


def register() -> None:
    """Register the adapters (idempotent; an adapter someone else registered for a type stays)."""
    # ``{}.get`` returns None for None: the same NULL, through a C call rather than a Python one.
    adapters: list[tuple[type, object]] = [(_NONE, {}.get), (bytes, bytes)]
    adapters += [(enum, str) for enum in _vocabulary_enums()]
    for kind, adapter in adapters:
        if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, adapter)  # type: ignore[arg-type]
