"""Gateway secret_refs against the vault (vault.md §11, config.md §4.3): which secrets the gateway
may name, and that an API token's value is read fresh on every request."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductile.api.auth import SecretRef, TokenSet
from ductile.app.vault import init_vault
from ductile.commands.vault import RevokeSecret
from ductile.config.errors import ConfigError
from ductile.config.secret_refs import resolve
from ductile.vault.document import Principal, Secret, VaultDocument
from ductile.vault.keys import generate_identity, load_keyring, write_key_file
from ductile.vocabulary import PrincipalKind, SecretStatus, VaultActor

LABEL = "api.auth.tokens[0]"
VALUE = "v" * 43


def doc(grants: tuple[str, ...] = (), status: SecretStatus = SecretStatus.ACTIVE, value: str = VALUE,
        name: str = "tok") -> VaultDocument:
    return VaultDocument(
        secrets={name: Secret(value=value, authorized_principals=grants, status=status)},
        principals={"core": Principal(kind=PrincipalKind.GATEWAY),
                    "mailer": Principal(kind=PrincipalKind.PLUGIN),
                    "grafana": Principal(kind=PrincipalKind.CONSUMER),
                    "edge": Principal(kind=PrincipalKind.GATEWAY)},
    )


@pytest.mark.parametrize("grants", [(), ("core",), ("grafana",), ("edge",), ("mailer", "core"), ("mailer", "grafana")])
def test_visible_to_the_gateway(grants: tuple[str, ...]) -> None:
    assert resolve(doc(grants), "tok", LABEL).warnings == ()


def test_a_grant_to_an_unregistered_name_resolves_with_a_warning() -> None:
    resolved = resolve(doc(("ghost", "mailer")), "tok", LABEL)
    assert resolved.warnings == (
        'api.auth.tokens[0]: secret_ref "tok" is granted to unregistered principal(s) ghost; the gateway may use it',)


@pytest.mark.parametrize("document", [
    doc(("mailer",)),  # granted only to plugin principals
    doc(status=SecretStatus.REVOKED, value=""),
    doc(value=""),
    doc(name="other"),  # unknown
    doc(name="core-admin-token"),  # never resolves
    None,  # no vault
], ids=["plugin-only", "revoked", "empty", "unknown", "admin-token", "no-vault"])
def test_not_found_in_vault(document: VaultDocument | None) -> None:
    name = "core-admin-token" if document is not None and "core-admin-token" in document.secrets else "tok"
    with pytest.raises(ConfigError) as caught:
        resolve(document, name, LABEL)
    assert str(caught.value) == f'api.auth.tokens[0]: secret_ref "{name}" not found in vault'
    assert VALUE not in str(caught.value)


def test_a_roll_or_revoke_takes_effect_on_the_next_request() -> None:
    current = {"doc": doc()}
    tokens = TokenSet([(SecretRef("tok"), ["jobs:ro"]), ("literal-token", ["*"])], lambda: current["doc"])
    caller = tokens.match(VALUE)
    assert caller is not None and caller.has("jobs:status:ro") and not caller.has("system:ro")
    current["doc"] = doc(value="w" * 43)  # rolled
    assert tokens.match(VALUE) is None
    assert tokens.match("w" * 43) is not None
    current["doc"] = doc(status=SecretStatus.REVOKED, value="")
    assert tokens.match("w" * 43) is None and tokens.match("") is None
    assert tokens.match("literal-token") is not None  # literals are untouched



def test_a_roll_through_the_keeper_is_refused_from_its_commit_on(tmp_path: Path) -> None:
    key = tmp_path / "age.key"
    write_key_file(key, generate_identity(), "test")
    keeper, _ = init_vault(tmp_path / "vault.age", load_keyring(key), None)
    keeper.set("api-token-ci", value=VALUE, grants=["core"], actor=VaultActor.CLI)
    tokens = TokenSet([(SecretRef(resolve(keeper.document(), "api-token-ci", LABEL).name), ["jobs:ro"])],
                      keeper.document)
    assert tokens.match(VALUE) is not None
    keeper.roll("api-token-ci", value="n" * 43)
    assert tokens.match(VALUE) is None and tokens.match("n" * 43) is not None
    keeper.apply(RevokeSecret(name="api-token-ci"))
    assert tokens.match("n" * 43) is None
