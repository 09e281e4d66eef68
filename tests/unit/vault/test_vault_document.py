"""The vault document (vault.md §2): the spec's YAML shape, values kept exactly, unknown keys kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ductile.vault.document import (
    Principal,
    Secret,
    VaultDocument,
    VaultDocumentError,
    marshal,
    parse,
)
from ductile.vocabulary import PrincipalKind, SecretPattern, SecretStatus

SPEC_EXAMPLE = b"""
secrets:
  smtp_pw:
    value: "s3cret"
    authorized_principals: [mailer]
    status: active
    pattern: manual
    roll_count: 2
    created_at: "2026-11-27T10:00:00Z"
    updated_at: "2026-11-27T11:00:00Z"
    revoked_at: ""
    description: ""
principals:
  core: {kind: gateway, status: active, nonce: bm9uY2U}
  mailer: {kind: plugin, status: active}
"""


def test_the_spec_example_reads_as_typed_entries() -> None:
    doc = parse(SPEC_EXAMPLE)
    smtp = doc.secrets["smtp_pw"]
    assert (smtp.value, smtp.authorized_principals, smtp.status, smtp.pattern, smtp.roll_count) == (
        "s3cret", ("mailer",), SecretStatus.ACTIVE, SecretPattern.MANUAL, 2)
    assert doc.principals["core"] == Principal(kind=PrincipalKind.GATEWAY, nonce="bm9uY2U")
    assert doc.principals["mailer"].kind == PrincipalKind.PLUGIN


def test_keys_this_release_does_not_know_survive_a_rewrite() -> None:
    text = SPEC_EXAMPLE.replace(b'    description: ""\n', b"    rotation_hint: {every: 30d}\n") + b"future: [1, 2]\n"
    doc = parse(text)
    again = parse(marshal(doc))
    assert again == doc
    assert again.secrets["smtp_pw"].extra == {"rotation_hint": {"every": "30d"}}
    assert again.extra == {"future": [1, 2]}


@given(st.text(max_size=200))
def test_any_value_comes_back_exactly(value: str) -> None:
    doc = VaultDocument(secrets={"x": Secret(value=value, created_at="2026-01-01T00:00:00Z")})
    assert parse(marshal(doc)).secrets["x"].value == value


@pytest.mark.parametrize("value", ["0o17", "0x1F", "true", "null", "~", "1e3", ".inf", "12:30", "yes", ""])
def test_values_that_look_like_other_yaml_types_stay_strings(value: str) -> None:
    doc = VaultDocument(secrets={"x": Secret(value=value)})
    assert parse(marshal(doc)).secrets["x"].value == value


def test_the_same_document_always_marshals_to_the_same_bytes() -> None:
    doc = parse(SPEC_EXAMPLE)
    assert marshal(doc) == marshal(parse(marshal(doc)))


@pytest.mark.parametrize("text", [
    b"", b"[]", b"- a\n", b"secrets: [1]\n", b"secrets: {x: {status: gone}}\n", b"principals: {p: {}}\n",
    b"secrets: {x: {value: 5}}\n", b"secrets: {x: 1}\n", b"a: [\n",
])
def test_anything_but_a_vault_document_fails_closed(text: bytes) -> None:
    with pytest.raises(VaultDocumentError):
        parse(text)


def test_errors_never_quote_a_value() -> None:
    with pytest.raises(VaultDocumentError) as caught:
        parse(b'secrets: {x: {value: "CANARY-1", roll_count: "CANARY-2"}}\n')
    assert "CANARY" not in str(caught.value)


def test_printing_a_document_never_shows_a_value_or_the_nonce() -> None:
    from rich.pretty import pretty_repr

    doc = VaultDocument(
        secrets={"x": Secret(value="CANARY-value")},
        principals={"core": Principal(kind=PrincipalKind.GATEWAY, nonce="CANARY-nonce")},
    )
    for shown in (repr(doc), str(doc), pretty_repr(doc), repr(doc.secrets["x"]), f"{doc.principals['core']}"):
        assert "CANARY" not in shown
    assert doc.secrets["x"].value == "CANARY-value"  # hidden from print, not from the code
