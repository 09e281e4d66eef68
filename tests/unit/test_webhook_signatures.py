"""Webhook signatures and timestamps (webhooks.md §3): the spec's test vectors, the header forms,
fail-closed verification, and the timestamp window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ductile.webhook_signatures import (
    TimestampVerdict,
    check_timestamp,
    parse_timestamp,
    replay_key,
    sign,
    verify,
)

BODY = b'{"ref":"main"}'
BODY_ONLY = "22707867160f8bbefc2d13c33988c27054550701eedfeb41903e23704bd9f679"
WITH_TIMESTAMP = "3e04c14f44aab029306ec384dbcb8fe9be93f90559bd29ca3d6457b9580cdcc1"


def test_the_spec_test_vectors_verify() -> None:
    assert sign("s3cret", BODY) == f"sha256={BODY_ONLY}"
    assert sign("s3cret", BODY, "1767225600") == f"sha256={WITH_TIMESTAMP}"
    assert verify("s3cret", BODY, f"sha256={BODY_ONLY}")
    assert verify("s3cret", BODY, f"sha256={WITH_TIMESTAMP}", " 1767225600 ")


def test_header_forms_prefix_optional_hex_any_case_whitespace_trimmed() -> None:
    for value in (BODY_ONLY, BODY_ONLY.upper(), f"  sha256={BODY_ONLY}\t", f"sha256={BODY_ONLY.upper()}"):
        assert verify("s3cret", BODY, value), value
    for value in (f"SHA256={BODY_ONLY}", f"sha256:{BODY_ONLY}", BODY_ONLY[:-1], BODY_ONLY + "0",
                  BODY_ONLY[:-1] + "g", "", "sha256="):
        assert not verify("s3cret", BODY, value), value


def test_an_empty_or_missing_secret_never_verifies() -> None:
    assert not verify("", BODY, sign("", BODY))
    assert not verify(None, BODY, sign("", BODY))


def test_the_same_mac_has_one_replay_key_whatever_its_form() -> None:
    assert replay_key(BODY_ONLY) == replay_key(f"sha256={BODY_ONLY.upper()}") is not None
    assert replay_key("nonsense") is None


@given(st.binary(max_size=256), st.integers(min_value=0, max_value=len(BODY) - 1), st.integers(1, 255))
def test_changing_one_byte_of_the_body_fails(secret_tail: bytes, index: int, delta: int) -> None:
    secret = "k" + secret_tail.hex()
    header = sign(secret, BODY)
    changed = bytearray(BODY)
    changed[index] = (changed[index] + delta) % 256
    assert verify(secret, BODY, header)
    assert not verify(secret, bytes(changed), header)


@given(st.integers(min_value=0, max_value=63), st.sampled_from("0123456789abcdef"))
def test_changing_one_hex_digit_of_the_signature_fails(index: int, digit: str) -> None:
    if BODY_ONLY[index] == digit:
        return
    assert not verify("s3cret", BODY, BODY_ONLY[:index] + digit + BODY_ONLY[index + 1:])


def test_timestamps_unix_seconds_or_rfc3339_with_an_offset() -> None:
    assert parse_timestamp("1767225600") == 1767225600.0
    assert parse_timestamp("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == 1767225600.0
    for bad in ("2026-01-01T00:00:00", "2026-01-01", "-5", "1.5", "soon", "١٢٣"):
        assert parse_timestamp(bad) is None, bad


def test_timestamp_window_is_plus_or_minus_tolerance() -> None:
    now = 1767225600.0
    assert check_timestamp("1767225600", now, 300) is TimestampVerdict.OK
    assert check_timestamp(str(int(now) - 300), now, 300) is TimestampVerdict.OK
    assert check_timestamp(str(int(now) - 301), now, 300) is TimestampVerdict.STALE
    assert check_timestamp(str(int(now) + 301), now, 300) is TimestampVerdict.STALE
    assert check_timestamp(None, now, 300) is TimestampVerdict.BAD
    assert check_timestamp("", now, 300) is TimestampVerdict.BAD
    assert check_timestamp("tomorrow", now, 300) is TimestampVerdict.BAD
