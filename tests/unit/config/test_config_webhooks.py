"""``webhooks.*`` load rules (webhooks.md §1): every load error's exact text with its file:line,
the defaults, the binary byte sizes, and a disabled plugin's endpoint left unserved with a warning."""

from __future__ import annotations

import json

import msgspec
import pytest

from ductile.api.system import webhooks_view
from ductile.config import ConfigError
from ductile.config.model import WebhookEndpoint, WebhooksConfig
from ductile.config.webhooks import check_secret_refs
from ductile.vault.document import Secret, VaultDocument
from tests.unit.config.conftest import Load, Write

ROOT = "plugin_roots: [plugins]\nplugins: {hook: {enabled: true}, off: {enabled: false}}\n"
GOOD = {"path": "/h", "plugin": "hook", "secret_ref": "k", "signature_header": "X-Sig"}


def config_with(write: Write, *endpoints: dict[str, object], listen: str | None = "127.0.0.1:8091") -> None:
    section: dict[str, object] = {"endpoints": list(endpoints)}
    if listen is not None:
        section["listen"] = listen
    write("config.yaml", ROOT + "webhooks: " + json.dumps(section) + "\n")


def test_a_full_endpoint_loads_typed_with_its_defaults(write: Write, load: Load) -> None:
    config_with(write, GOOD, {**GOOD, "path": "/t", "name": "t", "max_body_size": "2KiB", "event_type": "site.x",
                              "timestamp_header": "X-Ts", "timestamp_tolerance": "30s"})
    hooks = load().webhooks
    assert hooks.listen == "127.0.0.1:8091"
    plain, timed = hooks.endpoints
    assert (plain.name, plain.max_body_size, plain.timestamp_header, plain.timestamp_tolerance) == ("/h", 1048576,
                                                                                                    None, 300.0)
    assert (timed.name, timed.max_body_size, timed.event_type, timed.timestamp_tolerance) == ("t", 2048, "site.x", 30.0)
    assert [e.path for e in hooks.served] == ["/h", "/t"]


@pytest.mark.parametrize(("size", "expected"), [
    (100, 100), ("100", 100), ("1B", 1), ("1kb", 1024), ("1MB", 1048576), ("1MiB", 1048576), ("2GB", 2 * 1024**3),
    ("1gib", 1024**3), ("1.5KB", 1536),
])
def test_max_body_size_multiples_are_binary(write: Write, load: Load, size: object, expected: int) -> None:
    config_with(write, {**GOOD, "max_body_size": size})
    assert load().webhooks.endpoints[0].max_body_size == expected


@pytest.mark.parametrize(("change", "detail"), [
    ({"path": None}, "path is required"),
    ({"path": "h"}, 'path must start with "/"'),
    ({"path": "/healthz"}, 'path "/healthz" is reserved'),
    ({"plugin": None}, "plugin is required"),
    ({"plugin": "nope"}, 'plugin "nope" is not configured'),
    ({"secret_ref": None}, "secret_ref is required"),
    ({"signature_header": None}, "signature_header is required"),
    ({"max_body_size": "lots"}, 'invalid max_body_size "lots"'),
    ({"max_body_size": 0}, 'invalid max_body_size "0"'),
    ({"max_body_size": "-1MB"}, 'invalid max_body_size "-1MB"'),
    ({"max_body_size": "1TB"}, 'invalid max_body_size "1TB"'),
    ({"timestamp_header": "X-Ts", "timestamp_tolerance": "soon"}, 'invalid timestamp_tolerance "soon"'),
    ({"timestamp_header": "X-Ts", "timestamp_tolerance": "0s"}, 'invalid timestamp_tolerance "0s"'),
    ({"timestamp_tolerance": "1m"}, "timestamp_tolerance requires timestamp_header"),
    ({"event_type": "ductile.secret"}, "event_type must not use the reserved ductile. namespace"),
])
def test_each_load_error_names_the_endpoint_and_its_line(
    write: Write, load: Load, change: dict[str, object], detail: str
) -> None:
    entry = {key: value for key, value in {**GOOD, **change}.items() if value is not None}
    config_with(write, entry)
    with pytest.raises(ConfigError) as error:
        load()
    name = entry.get("path", "webhooks.endpoints[0]")
    assert error.value.message == f'webhook endpoint "{name}": {detail}'
    assert (error.value.file, error.value.line) == ("config.yaml", 3)


def test_listen_is_required_once_when_endpoints_exist(write: Write, load: Load) -> None:
    config_with(write, GOOD, {**GOOD, "path": "/b"}, listen=None)
    with pytest.raises(ConfigError) as error:
        load()
    assert error.value.message == "webhooks.listen is required when webhook endpoints are configured"


def test_listen_without_endpoints_is_fine_and_must_be_host_port(write: Write, load: Load) -> None:
    config_with(write)
    assert load().webhooks.served == []
    config_with(write, GOOD, listen="nowhere")
    with pytest.raises(ConfigError, match=r'webhooks.listen: invalid address "nowhere" \(expected host:port\)$'):
        load()


def test_duplicate_paths_across_files_name_both(write: Write, load: Load) -> None:
    write("config.yaml", ROOT + "include: [webhooks.yaml]\nwebhooks: " + json.dumps(
        {"listen": "127.0.0.1:1", "endpoints": [GOOD]}) + "\n")
    write("webhooks.yaml", "webhooks:\n  - " + json.dumps(GOOD) + "\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == 'webhooks.yaml:2: webhook path "/h" is defined twice (config.yaml, webhooks.yaml)'


def test_a_disabled_plugins_endpoint_is_not_served_and_warns(write: Write, load: Load) -> None:
    config_with(write, GOOD, {**GOOD, "path": "/off", "plugin": "off"})
    config = load()
    assert [e.path for e in config.webhooks.served] == ["/h"]
    assert [w.message for w in config.warnings] == [
        'webhook endpoint "/off": plugin "off" is disabled; the endpoint is not served (404)']


def _endpoints(*refs: str) -> WebhooksConfig:
    return WebhooksConfig(listen="127.0.0.1:8091", endpoints=[
        WebhookEndpoint(name=f"/h{i}", path=f"/h{i}", plugin="hook", secret_ref=ref, signature_header="X-Sig")
        for i, ref in enumerate(refs)])


def test_an_unresolvable_secret_ref_fails_the_load_when_the_vault_is_readable() -> None:
    document = VaultDocument(secrets={"k": Secret(value="v")})
    found = check_secret_refs(_endpoints("k", "gone"), document)
    assert [str(e) for e in found.errors] == ['webhook endpoint "/h1": secret_ref "gone" not found in vault']
    assert found.warnings == []
    no_vault = check_secret_refs(_endpoints("k"), None)  # no vault at all: nothing resolves
    assert [str(e) for e in no_vault.errors] == ['webhook endpoint "/h0": secret_ref "k" not found in vault']


def test_an_unresolvable_secret_ref_is_only_a_warning_when_the_vault_has_no_key() -> None:
    found = check_secret_refs(_endpoints("k"), None, vault_unreadable=True)
    assert (found.errors, found.warnings) == ([], ['webhook endpoint "/h0": secret_ref "k" not found in vault'])


def test_config_view_shows_exactly_the_spec_fields_of_each_endpoint() -> None:
    timed = WebhookEndpoint(name="t", path="/t", plugin="hook", secret_ref="k", signature_header="X-Sig",
                            max_body_size=2048, event_type="site.x", timestamp_header="X-Ts", timestamp_tolerance=30.0)
    view = msgspec.to_builtins(webhooks_view(WebhooksConfig(listen="127.0.0.1:8091", endpoints=[
        *_endpoints("k").endpoints, timed])))
    assert view == {"listen": "127.0.0.1:8091", "endpoints": [
        {"name": "/h0", "path": "/h0", "plugin": "hook", "secret_ref": "k", "signature_header": "X-Sig",
         "max_body_size": 1048576},
        {"name": "t", "path": "/t", "plugin": "hook", "secret_ref": "k", "signature_header": "X-Sig",
         "max_body_size": 2048, "event_type": "site.x", "timestamp_header": "X-Ts", "timestamp_tolerance": "30s"},
    ]}
