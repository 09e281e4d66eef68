"""Property: every event type survives the codec and the log unchanged."""

from __future__ import annotations

import asyncio
import enum
import types as pytypes
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ductile.events import codec
from ductile.events.log import read_rows
from ductile.events.types import EVENT_TYPES, SCHEMAS, EventBase
from tests.stores import FreshStore

from .state_db import fresh_log

# msgpack carries int64 and uint64; NaN is excluded because it is never equal to itself.
ints = st.integers(-(2**63), 2**64 - 1)
json_like = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for one field type of an event (the few types events use)."""
    if tp is Any:
        return json_like
    if tp is int:
        return ints
    if tp is str:
        return st.text()
    if tp is bool:
        return st.booleans()
    if tp is type(None):
        return st.none()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # the statuses and outcomes (StrEnum)
        return st.sampled_from(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return st.builds(tp, **{f.name: strategy_for(f.type) for f in msgspec.structs.fields(tp)})
    origin = typing.get_origin(tp)
    if origin in (typing.Union, pytypes.UnionType):
        return st.one_of(*(strategy_for(arg) for arg in typing.get_args(tp)))
    if origin is dict:
        key, value = typing.get_args(tp)
        return st.dictionaries(strategy_for(key), strategy_for(value), max_size=5)
    if origin is list:
        (item,) = typing.get_args(tp)
        return st.lists(strategy_for(item), max_size=5)
    raise TypeError(f"no strategy for event field type {tp!r}")


def event_strategy(cls: type[EventBase]) -> st.SearchStrategy[EventBase]:
    fields = {f.name: strategy_for(f.type) for f in msgspec.structs.fields(cls)}
    return st.builds(cls, **fields)


any_event = st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda name: event_strategy(EVENT_TYPES[name]))


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_event_type_round_trips_through_the_codec(name, data):
    cls = EVENT_TYPES[name]
    event = data.draw(event_strategy(cls))
    assert codec.type_name(event) == name
    decoded = codec.decode(name, SCHEMAS[name], codec.encode(event))
    assert type(decoded) is cls
    assert decoded == event
    assert msgspec.convert(codec.to_builtins(event), cls) == event


def test_events_read_back_from_the_log_equal_what_was_appended(fresh_store: FreshStore):
    @settings(max_examples=fresh_store.examples(25), deadline=None)
    @given(events=st.lists(any_event, min_size=1, max_size=20))
    def run(events) -> None:
        async def scenario() -> None:
            async with fresh_log("normal", store=fresh_store) as log:
                await log.append("mixed", events)
                conn = log.reader()
                stored = read_rows(conn)
                conn.close()
            assert [r.event for r in stored] == events
            assert [r.type for r in stored] == [codec.type_name(e) for e in events]

        asyncio.run(scenario())

    run()
