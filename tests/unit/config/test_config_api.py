"""`api.*` (spec config.md §4.3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.config import ApiConfig, Config, ConfigError, TokenEntry

Write = Callable[[str, str], Path]
Load = Callable[..., Config]

ROOTS = "plugin_roots: [plugins]\n"


def _error(write: Write, load: Load, text: str) -> str:
    write("config.yaml", text)
    with pytest.raises(ConfigError) as error:
        load()
    return str(error.value)


def test_api_defaults(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", ROOTS)
    assert load().api == ApiConfig(
        enabled=False,
        listen="127.0.0.1:8080",
        host="127.0.0.1",
        port=8080,
        max_concurrent_sync=10,
        max_sync_timeout=300.0,
        allowed_origins=[],
        tokens=[],
        management_socket=config_dir / "data" / "vault-admin.sock",
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:9000", "127.0.0.1", 9000), ("localhost:0", "localhost", 0), ("[::1]:8443", "::1", 8443)],
)
def test_listen_is_split_into_host_and_port(
    write: Write, load: Load, listen: str, host: str, port: int
) -> None:
    write("config.yaml", ROOTS + f"api: {{enabled: true, listen: '{listen}'}}\n")
    config = load()
    assert (config.api.host, config.api.port) == (host, port)
    assert not [w for w in config.warnings if w.field == "api.listen"]


@pytest.mark.parametrize("listen", ["8080", "host:", "host:http", "::1:80", "h:70000"])
def test_malformed_listen_is_an_error(write: Write, load: Load, listen: str) -> None:
    assert _error(write, load, ROOTS + f"api: {{listen: '{listen}'}}\n") == (
        f'config.yaml:2: api.listen: invalid address "{listen}" (expected host:port)'
    )


def test_non_loopback_listen_warns_when_enabled(write: Write, load: Load) -> None:
    write("config.yaml", ROOTS + "api: {enabled: true, listen: '0.0.0.0:8080'}\n")
    assert [w.field for w in load().warnings] == ["api.listen"]


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("max_concurrent_sync: 0", "api.max_concurrent_sync must be > 0"),
        ("max_sync_timeout: 0s", "api.max_sync_timeout must be > 0"),
        ("max_sync_timeout: 30", 'api.max_sync_timeout: invalid duration "30": missing unit'),
    ],
)
def test_bad_api_bounds(write: Write, load: Load, snippet: str, message: str) -> None:
    assert _error(write, load, ROOTS + f"api: {{{snippet}}}\n") == f"config.yaml:2: {message}"


def test_management_socket_resolves_against_the_config_dir(
    write: Write, load: Load, config_dir: Path
) -> None:
    write("config.yaml", ROOTS + "api: {management_socket: run/admin.sock}\n")
    assert load().api.management_socket == config_dir / "run/admin.sock"


def test_management_socket_path_must_fit_a_unix_socket(write: Write, load: Load) -> None:
    long_path = "/tmp/" + "s" * 99  # 104 bytes
    assert _error(write, load, ROOTS + f"api: {{management_socket: {long_path}}}\n") == (
        "config.yaml:2: api.management_socket path too long (max 103 bytes)"
    )


def test_tokens_load_with_secret_ref_or_literal_token(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS
        + """\
api:
  auth:
    tokens:
      - {secret_ref: api-token-ci, scopes: ['jobs:ro', 'plugin:rw']}
      - {token: s3cret, scopes: ['*']}
      - {secret_ref: api-token-min}
""",
    )
    config = load()
    assert config.api.tokens == [
        TokenEntry(scopes=["jobs:ro", "plugin:rw"], secret_ref="api-token-ci"),
        TokenEntry(scopes=["*"], token="s3cret"),
        TokenEntry(scopes=[], secret_ref="api-token-min"),
    ]
    [warning] = config.warnings
    assert warning.message == (
        "api.auth.tokens[1]: literal token in config; move it into the vault with 'ductile config token create'"
    )
    assert (warning.file, warning.line) == ("config.yaml", 6)


@pytest.mark.parametrize("entry", ["{scopes: ['*']}", "{token: a, secret_ref: b, scopes: []}"])
def test_token_needs_exactly_one_of_secret_ref_or_token(write: Write, load: Load, entry: str) -> None:
    assert _error(write, load, ROOTS + f"api:\n  auth:\n    tokens:\n      - {entry}\n") == (
        "config.yaml:5: api.auth.tokens[0]: set exactly one of secret_ref or token"
    )


def test_empty_token_is_an_error(write: Write, load: Load) -> None:
    assert _error(write, load, ROOTS + "api:\n  auth:\n    tokens:\n      - {token: '', scopes: []}\n") == (
        "config.yaml:5: api.auth.tokens[0]: token is empty"
    )


def test_token_value_never_appears_in_a_type_error(write: Write, load: Load) -> None:
    message = _error(write, load, ROOTS + "api: {auth: {tokens: [{token: 123456, scopes: []}]}}\n")
    assert message == "config.yaml:2: api.auth.tokens[0].token: expected a string, got an integer"
    assert "123456" not in message


def test_unknown_scope_loads_with_a_warning(write: Write, load: Load) -> None:
    write(
        "config.yaml",
        ROOTS + "api: {auth: {tokens: [{secret_ref: t, scopes: ['jobs:ro', 'jobs:everything']}]}}\n",
    )
    config = load()
    assert config.api.tokens[0].scopes == ["jobs:ro", "jobs:everything"]
    [warning] = config.warnings
    assert (warning.field, warning.message) == (
        "api.auth.tokens[0].scopes[1]",
        'unknown scope "jobs:everything"',
    )
