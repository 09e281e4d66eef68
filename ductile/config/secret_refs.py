"""Gateway ``secret_ref``s against the vault (vault.md §11, config.md §4.3).

The one home of the visibility rule: a ``secret_ref`` of the gateway itself (an API token's; later
a webhook endpoint's and a relay's) names an ACTIVE secret with a value that has no grants or is
granted to ``core``, a consumer, a gateway principal or an unregistered name (the last with a
warning). A secret granted only to plugin principals is not the gateway's; the admin token never
resolves. Which secret an entry names is decided here at load; its VALUE is read again for every
check (``current_value``) so a roll or a revoke takes effect without a reload.

Nothing here returns a value in a message: errors and warnings name the secret only.
"""

from __future__ import annotations

import msgspec

from ductile.config.errors import ConfigError
from ductile.vault.document import ADMIN_TOKEN, CORE, VaultDocument
from ductile.vocabulary import PrincipalKind, SecretStatus

NOT_FOUND = 'secret_ref "{name}" not found in vault'
UNREGISTERED_GRANT = 'secret_ref "{name}" is granted to unregistered principal(s) {who}; the gateway may use it'


class SecretRef(msgspec.Struct, frozen=True):
    """A gateway credential held in the vault: the secret's name, never its value."""

    name: str


class Resolved(msgspec.Struct, frozen=True):
    """A ``secret_ref`` that resolved at load, and what its resolution warns about."""

    name: str
    warnings: tuple[str, ...] = ()


def resolve(document: VaultDocument | None, name: str, label: str) -> Resolved:
    """``name`` checked against the gateway-visible secrets of ``document`` (None: no vault).

    Unknown, revoked, empty, reserved or plugin-only → ``ConfigError("<label>: secret_ref "x" not
    found in vault")``: boot refuses and a reload is rejected (config.md §4.3).
    """
    missing = ConfigError(f"{label}: {NOT_FOUND.format(name=name)}")
    if document is None or name == ADMIN_TOKEN or current_value(document, name) is None:
        raise missing
    secret = document.secrets[name]
    if not secret.authorized_principals:
        return Resolved(name)
    unregistered: list[str] = []
    for grant in secret.authorized_principals:
        principal = document.principals.get(grant)
        if grant == CORE or (principal is not None and principal.kind != PrincipalKind.PLUGIN):
            return Resolved(name)
        if principal is None:
            unregistered.append(grant)
    if not unregistered:
        raise missing  # granted only to plugin principals: not the gateway's
    return Resolved(name, (f"{label}: {UNREGISTERED_GRANT.format(name=name, who=', '.join(unregistered))}",))


def current_value(document: VaultDocument | None, name: str) -> str | None:
    """The value a resolved reference has NOW: None once revoked (a revoked secret has no value,
    so nothing matches it, vault.md §11), or when the vault or the secret is gone."""
    if document is None or name == ADMIN_TOKEN:
        return None
    secret = document.secrets.get(name)
    if secret is None or secret.status != SecretStatus.ACTIVE or not secret.value:
        return None
    return secret.value
