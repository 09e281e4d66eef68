"""The API's RFC3339 text of an instant: rfc3339 remembers the seconds it has formatted, and must
give every instant exactly the text datetime gives it, however the instants come."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from ductile.events.timefmt import NS, parse_rfc3339, rfc3339


def _expected(ns: int) -> str:
    seconds, rem = divmod(ns, NS)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    micros = rem // 1000
    return base + "Z" if micros == 0 else f"{base}.{micros:06d}".rstrip("0") + "Z"


def test_rfc3339_gives_every_instant_its_own_text_across_many_seconds_in_any_order() -> None:
    rng = random.Random(15)
    now = 1_796_000_000 * NS
    # Instants a spawn formats in turn (now, its deadline a timeout later), seconds repeating and
    # more distinct seconds than are remembered, whole seconds and sub-microsecond parts.
    instants = [now + rng.choice((0, 30, 3600)) * NS + rng.randrange(200) * NS + rng.choice((0, 1, 999, 123_456_789))
                for _ in range(2_000)]
    for ns in instants:
        text = rfc3339(ns)
        assert text == _expected(ns)
        assert parse_rfc3339(text or "") == ns // 1000 * 1000
    assert rfc3339(None) is None
