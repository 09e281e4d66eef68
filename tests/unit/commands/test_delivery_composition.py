"""Secrets at spawn (vault.md §10): every row of the table with its exact text, its audit facts,
and the redaction of delivered values."""

from __future__ import annotations

import msgspec
import pytest
from rich.pretty import pretty_repr

from ductile.commands.delivery import Delivery, DeliveryRefusal, Redactor, compose, principal_of
from ductile.events.types import DeliveryRefused, FingerprintMismatch, SecretDenied, SecretsDelivered
from ductile.vault.document import ADMIN_TOKEN, CORE, Principal, Secret, VaultDocument
from ductile.vocabulary import (
    CompositionDenialReason,
    PermanentReason,
    PrincipalKind,
    PrincipalStatus,
    SecretDenialReason,
    SecretStatus,
)

JOB = "job-1"
NOW = 1_700_000_000_000_000_000
SMTP = "CANARY-smtp-password-value"
API = "CANARY-api-key-value"


def vault(mailer: PrincipalStatus | None = PrincipalStatus.ACTIVE) -> VaultDocument:
    principals = {CORE: Principal(kind=PrincipalKind.GATEWAY, nonce="n" * 43)}
    if mailer is not None:
        principals["mailer"] = Principal(kind=PrincipalKind.PLUGIN, status=mailer)
    return VaultDocument(
        principals=principals,
        secrets={
            "smtp_pw": Secret(value=SMTP, authorized_principals=("mailer",)),
            "api_key": Secret(value=API, authorized_principals=("other", "mailer")),
            "old": Secret(status=SecretStatus.REVOKED, authorized_principals=("mailer",), revoked_at="x"),
            "pending": Secret(value="", authorized_principals=("mailer",)),
            "theirs": Secret(value="not-for-mailer", authorized_principals=("other",)),
            ADMIN_TOKEN: Secret(value="admin-token-value", authorized_principals=("mailer",)),
        },
    )


def attested(_doc: VaultDocument) -> str | None:
    return None


def never(_doc: VaultDocument) -> str | None:
    raise AssertionError("the fingerprint is checked only for a registered, active principal")


def run(doc: VaultDocument | None, *, requires_vault: bool = False, principal: str = "mailer",
        attest=attested) -> Delivery | DeliveryRefusal:
    return compose(doc, plugin="mail-plugin", principal=principal, requires_vault=requires_vault, job_id=JOB,
                   now=NOW, attest=attest)


@pytest.mark.parametrize(("doc", "principal", "requires_vault", "error", "reason"), [
    (None, "mailer", True, "vault: plugin requires vault secrets but no vault is loaded",
     CompositionDenialReason.NO_VAULT),
    (vault(mailer=None), "mailer", True,
     'vault: plugin requires vault secrets but its principal "mailer" is not registered',
     CompositionDenialReason.PRINCIPAL_NOT_REGISTERED),
    (vault(PrincipalStatus.REVOKED), "mailer", False, 'vault: principal "mailer" is not active',
     CompositionDenialReason.PRINCIPAL_NOT_ACTIVE),
    (vault(PrincipalStatus.REVOKED), "mailer", True, 'vault: principal "mailer" is not active',
     CompositionDenialReason.PRINCIPAL_NOT_ACTIVE),
])
def test_fail_closed_rows_refuse_with_the_spec_text_and_a_compose_denial(doc, principal, requires_vault, error, reason):
    decision = run(doc, principal=principal, requires_vault=requires_vault, attest=never)
    assert decision == DeliveryRefusal(reason=PermanentReason.SECRETS_DENIED, error=error,
                                       facts=[DeliveryRefused(at=NOW, principal=principal, reason=reason, job_id=JOB)])


@pytest.mark.parametrize("doc", [None, vault(mailer=None)], ids=["no vault", "unknown principal"])
def test_a_plugin_the_vault_does_not_concern_runs_without_secrets_or_facts(doc):
    assert run(doc, attest=never) == Delivery()


@pytest.mark.parametrize("detail", ["plugin \"mail-plugin\" has no recorded fingerprint", "entrypoint changed"])
def test_an_unattested_or_changed_plugin_fails_closed_with_a_security_fact(detail):
    decision = run(vault(), attest=lambda _doc: detail)
    assert decision == DeliveryRefusal(
        reason=PermanentReason.FINGERPRINT_MISMATCH, error=f"fingerprint_mismatch: {detail}",
        facts=[FingerprintMismatch(at=NOW, principal="mailer", plugin="mail-plugin", job_id=JOB, detail=detail)],
        mismatch_detail=detail)


def test_an_attested_plugin_gets_every_active_granted_value_and_denials_for_the_rest():
    decision = run(vault())
    assert isinstance(decision, Delivery)
    assert decision.secrets == {"api_key": API, "smtp_pw": SMTP}  # never another's, never the admin token
    assert decision.facts == [
        SecretsDelivered(at=NOW, principal="mailer", names=["api_key", "smtp_pw"], job_id=JOB),
        SecretDenied(at=NOW, principal="mailer", name="old", reason=SecretDenialReason.SECRET_REVOKED, job_id=JOB),
        SecretDenied(at=NOW, principal="mailer", name="pending", reason=SecretDenialReason.SECRET_NO_VALUE, job_id=JOB),
    ]


def test_the_principal_is_the_configured_one_or_the_entry_name():
    assert principal_of("mail_plugin", "mailer") == "mailer"
    assert principal_of("mailer", None) == "mailer"


def test_a_delivery_and_its_facts_never_show_a_value():
    decision = run(vault())
    for text in (repr(decision), str(decision), pretty_repr(decision), msgspec.json.encode(decision.facts).decode()):
        assert SMTP not in text and API not in text


def test_delivered_values_of_8_bytes_or_more_are_redacted_also_when_json_escaped():
    redact = Redactor({"long": 'pa"ss\\word', "short": "1234567", "eight": "12345678"})
    assert redact('stderr: pa"ss\\word and 1234567 and 12345678') == \
        "stderr: [REDACTED:long] and 1234567 and [REDACTED:eight]"
    raw = msgspec.json.encode({"result": 'pa"ss\\word'}).decode()
    assert redact(raw) == '{"result":"[REDACTED:long]"}'
    assert not Redactor({"short": "1234567"})
    assert "12345678" not in repr(redact)


def test_a_value_that_contains_another_is_redacted_whole():
    redact = Redactor({"inner": "abcdefgh", "outer": "xxabcdefghxx"})
    assert redact("xxabcdefghxx abcdefgh") == "[REDACTED:outer] [REDACTED:inner]"
