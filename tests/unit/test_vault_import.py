"""The legacy tokens file and the ``--verify`` parity report (vault.md §6), pure."""

from __future__ import annotations

import pytest

from ductile.commands.errors import VaultRefused
from ductile.commands.vault_import import (
    LegacyToken,
    Parity,
    TokensFileError,
    all_match,
    parity,
    parse_tokens,
    plan,
)
from ductile.vault.document import Secret, VaultDocument
from ductile.vocabulary import SecretPattern, SecretStatus

CANARY = "CANARY-legacy-key-value"


def test_a_key_never_reaches_a_repr_or_a_parse_error() -> None:
    token = parse_tokens(f"tokens:\n  - name: ci\n    key: {CANARY}\n    scopes_file: x.json\n", "t.yaml")[0]
    assert token.key == CANARY
    assert CANARY not in repr(token) and CANARY not in str(token) and CANARY not in repr(plan([token], {}, False))
    with pytest.raises(TokensFileError) as bad:
        parse_tokens(f"tokens: [{{name: ci, key: {CANARY}\n", "t.yaml")
    assert CANARY not in str(bad.value)


def test_env_keys_are_skipped_unless_resolved_and_a_literal_dollar_brace_is_a_value() -> None:
    tokens = [LegacyToken(name="a", key="${LEGACY_A}"), LegacyToken(name="b", key="$${not-a-var}")]
    offer = plan(tokens, {"LEGACY_A": CANARY}, resolve_env=False)
    assert [s.name for s in offer.skipped] == ["a"] and offer.entries() == [("b", "${not-a-var}")]
    assert offer.skipped[0].reason() == "${LEGACY_A} (pass --resolve-env to read it)"
    assert plan(tokens, {"LEGACY_A": CANARY}, resolve_env=True).entries() == [("a", CANARY), ("b", "${not-a-var}")]
    unset = plan(tokens, {}, resolve_env=True)
    assert unset.skipped[0].reason() == "${LEGACY_A} not set"


def test_a_bad_name_refuses_the_file_even_on_a_skipped_entry() -> None:
    with pytest.raises(VaultRefused, match=r"^vault: invalid name$"):
        plan([LegacyToken(name="ok", key="v"), LegacyToken(name="Bad_Name", key="${X}")], {}, False)
    with pytest.raises(VaultRefused, match="reserved"):
        plan([LegacyToken(name="core-admin-token", key="v")], {}, False)


def test_parity_rows() -> None:
    doc = VaultDocument(secrets={
        "same": Secret(value="v1"), "changed": Secret(value="old"), "gone": Secret(status=SecretStatus.REVOKED),
        "stray": Secret(value="s"), "granted": Secret(value="g", authorized_principals=("mailer",)),
        "minted": Secret(value="m", pattern=SecretPattern.AUTO), "core-admin-token": Secret(value="t"),
    })
    offer = plan([LegacyToken(name="same", key="v1"), LegacyToken(name="changed", key="new"),
                  LegacyToken(name="gone", key="x"), LegacyToken(name="new", key="n"),
                  LegacyToken(name="env", key="${UNSET_LEGACY}")], {}, False)
    rows = parity(offer, doc)
    assert [(r.name, r.state) for r in rows] == [
        ("same", Parity.MATCH), ("changed", Parity.DRIFT), ("gone", Parity.DRIFT), ("new", Parity.MISSING),
        ("env", Parity.UNRESOLVED), ("stray", Parity.VAULT_ONLY)]
    assert not all_match(rows) and all_match(parity(plan([LegacyToken(name="same", key="v1")], {}, False),
                                                   VaultDocument(secrets={"same": Secret(value="v1")})))
