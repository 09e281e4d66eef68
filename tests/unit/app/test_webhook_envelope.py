"""The event a webhook job receives (webhooks.md §4): event_type, else the posted envelope, else
``webhook.received``; then event_id, timestamp and source."""

from __future__ import annotations

from ductile.app.webhooks import envelope

STAMP = {"source": "webhook:/h", "timestamp": "2026-01-01T00:00:00Z", "event_id": "e1"}


def build(body: dict[str, object], event_type: str | None = None) -> dict[str, object]:
    return envelope(body, "/h", event_type, "e1", "2026-01-01T00:00:00Z")


def test_event_type_wraps_the_whole_body() -> None:
    body = {"type": "x", "payload": {"a": 1}}
    assert build(body, "site.rebuild_requested") == {"type": "site.rebuild_requested", "payload": body, **STAMP}


def test_an_envelope_keeps_its_type_payload_and_string_dedupe_key() -> None:
    assert build({"type": "deploy.done", "payload": {"v": 2}, "dedupe_key": "d", "extra": 1}) == {
        "type": "deploy.done", "payload": {"v": 2}, "dedupe_key": "d", **STAMP}
    assert build({"type": "deploy.done", "payload": {}, "dedupe_key": 5}) == {"type": "deploy.done", "payload": {},
                                                                             **STAMP}


def test_any_other_object_is_webhook_received() -> None:
    for body in ({"ref": "main"}, {"type": 1, "payload": {}}, {"type": "t", "payload": [1]}, {}):
        assert build(body) == {"type": "webhook.received", "payload": body, **STAMP}
