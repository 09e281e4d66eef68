"""The vault admin token check (vault.md §7): one ``hmac.compare_digest`` on bytes whatever the
inputs — a missing token, a revoked one, a shorter or empty presented one — so the time taken
says nothing; and only the active token matches."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from ductile.api import vault as vault_api
from ductile.vault.document import ADMIN_TOKEN, Secret, VaultDocument
from ductile.vocabulary import SecretStatus

TOKEN = "t" * 43


def doc(status: SecretStatus = SecretStatus.ACTIVE, value: str = TOKEN) -> VaultDocument:
    return VaultDocument(secrets={ADMIN_TOKEN: Secret(value=value, status=status)})


@pytest.fixture
def compares(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        assert isinstance(a, bytes) and isinstance(b, bytes)
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(vault_api.hmac, "compare_digest", spy)
    return seen


@pytest.mark.parametrize(("presented", "document", "expected"), [
    (TOKEN, doc(), True),
    (TOKEN[:-1], doc(), False),  # a prefix: compared all the same, no early return on length
    (TOKEN + "x", doc(), False),
    ("", doc(), False),  # an empty token never matches
    (TOKEN, doc(SecretStatus.REVOKED), False),  # only an active token
    (TOKEN, None, False),  # no vault document at all: compared against the dummy
    ("", doc(value=""), False),  # an empty stored token and an empty presented one
    (TOKEN, VaultDocument(), False),  # no admin token in the document
])
def test_every_check_runs_exactly_one_constant_time_compare(compares: list[tuple[bytes, bytes]], presented: str,
                                                            document: VaultDocument | None, expected: bool) -> None:
    assert vault_api.admin_token_matches(presented, document) is expected
    assert len(compares) == 1
    assert compares[0][1] == presented.encode()


def test_the_dummy_stands_in_when_there_is_no_usable_token(compares: list[tuple[bytes, bytes]]) -> None:
    vault_api.admin_token_matches(TOKEN, doc(SecretStatus.REVOKED))
    assert compares[0][0] != TOKEN.encode()  # the revoked value is not what is compared
