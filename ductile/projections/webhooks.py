"""The webhook replay guard's read model (webhooks.md §3): accepted (endpoint, signature) pairs
inside their replay window, with the job of the first delivery.

Rows past their window are deleted as each new acceptance is applied (the event's own instant
decides, so a rebuild from the log ends with the same rows); a stale request never reaches the
lookup anyway, since the timestamp check refuses it first.
"""

from __future__ import annotations

import sqlite3

import msgspec

from ductile.events.record import Recorded
from ductile.events.types import WebhookAccepted
from ductile.projections.projection import Projection

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_replays (
  endpoint TEXT NOT NULL,
  signature_key TEXT NOT NULL,
  job_id TEXT NOT NULL,
  expires_ns INTEGER NOT NULL,
  PRIMARY KEY (endpoint, signature_key)
);
CREATE INDEX IF NOT EXISTS webhook_replays_expiry ON webhook_replays(expires_ns)
"""

PROJECTION = Projection(name="webhooks", version=1, schema=SCHEMA, tables=("webhook_replays",), reads_meta=False)


class AcceptedDelivery(msgspec.Struct, frozen=True):
    job_id: str
    expires_ns: int


@PROJECTION.on(WebhookAccepted)
def _accepted(cur: sqlite3.Cursor, e: WebhookAccepted, rec: Recorded) -> None:
    cur.execute("DELETE FROM webhook_replays WHERE expires_ns < ?", (e.at,))
    cur.execute(
        "INSERT INTO webhook_replays(endpoint, signature_key, job_id, expires_ns) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(endpoint, signature_key) DO UPDATE SET job_id=excluded.job_id, expires_ns=excluded.expires_ns",
        (e.endpoint, e.signature_key, e.job_id, e.expires_at),
    )


def find_accepted(cur: sqlite3.Cursor, endpoint: str, signature_key: str) -> AcceptedDelivery | None:
    """The first delivery of this signature on ``endpoint``. No clock filter here: the same
    signature carries the same signed timestamp, so the timestamp check has already decided that
    its window is open."""
    row = cur.execute(
        "SELECT job_id, expires_ns FROM webhook_replays WHERE endpoint = ? AND signature_key = ?",
        (endpoint, signature_key),
    ).fetchone()
    return None if row is None else AcceptedDelivery(job_id=row[0], expires_ns=row[1])
