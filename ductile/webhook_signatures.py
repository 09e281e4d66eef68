"""Webhook signatures (webhooks.md §3): HMAC-SHA256 over the raw body, and the signed timestamp.

A shared leaf (imports nothing of Ductile): pure functions of bytes, strings and a clock value, so
the listener, the docs test and the unit tests use the one implementation.

- The key is the UTF-8 bytes of the secret value; an empty or missing secret never verifies.
- The header value is an optional literal ``sha256=`` (case-sensitive), then 64 hex digits in either
  case, surrounding whitespace trimmed. Anything else fails verification.
- With a timestamp header, the signed message is ``<timestamp, trimmed> + "." + <raw body>``.
- MACs are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from enum import StrEnum

PREFIX = "sha256="
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only; 12 digits is far past year 9999


class TimestampVerdict(StrEnum):
    OK = "ok"
    BAD = "bad_timestamp"  # missing or unparsable
    STALE = "stale_timestamp"  # outside ±tolerance of the gateway clock


def message(body: bytes, timestamp: str | None = None) -> bytes:
    """The bytes that are signed: the body, or ``<timestamp>.<body>`` with a timestamp header."""
    return body if timestamp is None else timestamp.strip().encode() + b"." + body


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """The header value a sender puts on ``body`` (``sha256=<lowercase hex>``)."""
    return PREFIX + hmac.new(secret.encode(), message(body, timestamp), hashlib.sha256).hexdigest()


def decode(header_value: str) -> bytes | None:
    """The 32 MAC bytes a header value carries, or None when it is malformed."""
    text = header_value.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    if not _HEX64.fullmatch(text):
        return None
    return bytes.fromhex(text)


def verify(secret: str | None, body: bytes, header_value: str, timestamp: str | None = None) -> bool:
    """Is ``header_value`` the HMAC-SHA256 of the signed message under ``secret``?"""
    presented = decode(header_value)
    if not secret or presented is None:
        return False
    expected = hmac.new(secret.encode(), message(body, timestamp), hashlib.sha256).digest()
    return hmac.compare_digest(expected, presented)


def replay_key(header_value: str) -> str | None:
    """What the replay guard records for an accepted signature: a digest of its MAC bytes, so the
    same signed request matches whatever its prefix or hex case, and the log holds no signature."""
    presented = decode(header_value)
    return None if presented is None else hashlib.sha256(presented).hexdigest()


def parse_timestamp(value: str) -> float | None:
    """Unix seconds from integer unix seconds or an RFC3339 date-time with an offset; else None."""
    text = value.strip()
    if _UNIX_SECONDS.fullmatch(text):
        return float(int(text))
    if len(text) < 20 or text[10] not in "Tt":
        return None
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # RFC3339 always names its offset; a local time would depend on the gateway's zone
    return parsed.timestamp()


def check_timestamp(value: str | None, now: float, tolerance: float) -> TimestampVerdict:
    """Is the header's timestamp present, parsable and within ``±tolerance`` seconds of ``now``?"""
    if value is None or not value.strip():
        return TimestampVerdict.BAD
    sent = parse_timestamp(value)
    if sent is None:
        return TimestampVerdict.BAD
    if abs(now - sent) > tolerance:
        return TimestampVerdict.STALE
    return TimestampVerdict.OK
