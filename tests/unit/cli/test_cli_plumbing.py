"""Argv normalisation, duration flags, the gateway URL and the local-host rule of the CLI."""

from __future__ import annotations

import pytest

from ductile.cli.client import listen_url, require_local_host
from ductile.cli.common import parse_timeout
from ductile.cli.main import normalise_argv
from ductile.cli.output import CliFailure


@pytest.mark.parametrize(("argv", "expected"), [
    (["api", "/x", "-b", "-"], ["api", "/x", "-b=-"]),
    (["plugin", "run", "p", "--payload-file", "-", "--wait"], ["plugin", "run", "p", "--payload-file=-", "--wait"]),
    (["job", "list", "-config", "d"], ["job", "list", "--config", "d"]),
    (["api", "/x", "-f", "a=1", "-H", "X: y"], ["api", "/x", "-f", "a=1", "-H", "X: y"]),
    (["api", "/x", "--", "-"], ["api", "/x", "--", "-"]),
    (["api", "help"], ["api", "--help"]),
    (["--version"], ["version"]),
])
def test_normalise_argv(argv: list[str], expected: list[str]) -> None:
    assert normalise_argv(argv) == expected


@pytest.mark.parametrize(("text", "seconds", "shown"), [
    ("60s", 60.0, "60s"), ("2m", 120.0, "2m"), ("1h30m", 5400.0, "1h30m"), ("5", 5.0, "5s"), ("0.5", 0.5, "0.5s"),
])
def test_timeouts_are_durations_or_seconds(text: str, seconds: float, shown: str) -> None:
    assert parse_timeout(text) == (seconds, shown)


@pytest.mark.parametrize("text", ["abc", "5x", "0", "0s", "-1", "-5s", "nan", "inf"])
def test_a_bad_timeout_is_a_command_line_error(text: str) -> None:
    with pytest.raises(CliFailure) as info:
        parse_timeout(text)
    assert info.value.code == 2
    assert info.value.message.startswith(f'invalid --timeout "{text}"')


@pytest.mark.parametrize(("listen", "url"), [
    ("127.0.0.1:8080", "http://127.0.0.1:8080"), ("0.0.0.0:9000", "http://127.0.0.1:9000"),
    ("[::]:9000", "http://[::1]:9000"), ("[::1]:80", "http://[::1]:80"), ("localhost:81", "http://localhost:81"),
])
def test_listen_url_connects_to_loopback_for_a_wildcard_bind(listen: str, url: str) -> None:
    assert listen_url(listen) == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://10.1.2.3",
                                 "http://192.168.0.9:80", "http://172.16.0.1", "http://169.254.1.1", "http://[::1]:8"])
def test_local_hosts_may_receive_credentials(url: str) -> None:
    require_local_host(url)


@pytest.mark.parametrize(("url", "host"), [("http://8.8.8.8", "8.8.8.8"), ("https://[2001:4860::8888]", "2001:4860::8888")])
def test_other_hosts_are_refused(url: str, host: str) -> None:
    with pytest.raises(CliFailure) as info:
        require_local_host(url)
    assert info.value.message == f"refusing to send credentials to non-local host {host}"
