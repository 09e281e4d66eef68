"""Duration and byte-size formats (spec config.md §3.4)."""

from __future__ import annotations

import pytest

from ductile.config import ConfigError, format_duration, parse_byte_size, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("720h", 2_592_000.0),
        ("30d", 2_592_000.0),
        ("2w", 1_209_600.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("0", 0.0),
        (0, 0.0),
    ],
)
def test_durations_parse_to_seconds(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30", 30, 1.5])
def test_bare_number_is_missing_its_unit(value: str | float) -> None:
    with pytest.raises(ConfigError) as error:
        parse_duration(value, "service.tick_interval")
    assert str(error.value) == f'service.tick_interval: invalid duration "{value}": missing unit'


@pytest.mark.parametrize("value", ["-5m", -5])
def test_negative_duration_is_refused(value: str | int) -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_duration(value, "k")


@pytest.mark.parametrize("value", ["", "5x", "m", "5m3", "five minutes", True])
def test_malformed_duration_names_key_and_value(value: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_duration(value, "plugins.x.timeouts.poll")  # type: ignore[arg-type]
    assert str(error.value).startswith('plugins.x.timeouts.poll: invalid duration "')


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (300.0, "5m"),
        (5400.0, "1h30m"),
        (0.3, "300ms"),
        (0.0, "0s"),
        (30.0, "30s"),
        (86400.0, "24h"),
        (2_592_000.0, "720h"),
        (3661.0, "1h1m1s"),
        (1.5, "1.5s"),
        (0.0015, "1.5ms"),
    ],
)
def test_format_duration_is_the_short_go_style_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.3, 1.5, 59.0, 90.0, 3600.0, 5400.0, 86399.0, 7_776_000.0, 0.000001])
def test_formatted_durations_parse_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds), "k") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (4096, 4096),
        ("512B", 512),
        ("1KB", 1024),
        ("1MB", 1_048_576),
        ("2GB", 2 * 1024**3),
        ("1MiB", 1_048_576),
        ("1 KiB", 1024),
        ("1GiB", 1024**3),
        ("100", 100),
    ],
)
def test_byte_sizes_are_1024_based(value: int | str, size: int) -> None:
    assert parse_byte_size(value, "k") == size


@pytest.mark.parametrize("value", ["1TB", "MB", "-1MB", -1, True, "1.5", "١MB"])
def test_bad_byte_size_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^webhooks.endpoints\[0\].max_body_size: invalid byte size"):
        parse_byte_size(value, "webhooks.endpoints[0].max_body_size")
