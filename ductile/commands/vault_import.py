"""``ductile vault import --tokens FILE`` (vault.md §6): the legacy ``tokens.yaml`` read, its
``${ENV}`` keys sorted out, and the ``--verify`` parity report. Pure: the CLI reads the file and
the vault, the keeper writes (``ImportSecrets``, all or nothing, in the decider).

A legacy entry is ``{name, key, …}``; everything but ``name`` and ``key`` is ignored (scopes live
in the config now). The key is a secret VALUE: it never reaches a repr, a message or the report —
the report says only *whether* it matches (compared in constant time).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

import msgspec
import yaml

from ductile.commands.errors import VaultRefusal, VaultRefused
from ductile.config.interpolation import Unresolved, interpolate_text
from ductile.vault.document import ADMIN_TOKEN, SECRET_NAME, VaultDocument
from ductile.vocabulary import SecretPattern, SecretStatus

NOT_A_TOKENS_FILE = "{path}: not a legacy tokens file (expected 'tokens: [{{name, key}}, ...]')"
BAD_ENTRY = "{path}: tokens[{index}] needs a string 'name' and a string 'key'"


class TokensFileError(Exception):
    """The tokens file cannot be read as ``tokens: [{name, key}, ...]``; names no value."""


class Parity(StrEnum):
    """One row of the ``--verify`` report (vault.md §6)."""

    MATCH = "match"
    VAULT_ONLY = "vault-only"
    MISSING = "missing"
    DRIFT = "drift"
    UNRESOLVED = "unresolved"


class LegacyToken(msgspec.Struct, frozen=True, kw_only=True):
    """One ``tokens[]`` entry. ``key`` is a value: sealed out of every repr."""

    name: str
    key: str

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        yield "name", self.name

    def __repr__(self) -> str:
        return f"LegacyToken(name={self.name!r})"

    __str__ = __repr__


class Skipped(msgspec.Struct, frozen=True, kw_only=True):
    """An entry whose key could not be had: a ``${ENV}`` key without ``--resolve-env``
    (``unset`` False), or one naming a variable that is not set. Names variables, never a value."""

    name: str
    variables: list[str]
    unset: bool = False

    def reason(self) -> str:
        refs = ", ".join(f"${{{v}}}" for v in self.variables)
        return f"{refs} not set" if self.unset else f"{refs} (pass --resolve-env to read it)"


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What the file offers: resolved tokens and skipped ones, in file order."""

    tokens: list[LegacyToken]
    skipped: list[Skipped]

    def entries(self) -> list[tuple[str, str]]:
        return [(t.name, t.key) for t in self.tokens]


class ParityRow(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    state: Parity
    detail: str = ""


def parse_tokens(text: str, path: str) -> list[LegacyToken]:
    """``tokens: [{name, key, …}]`` (or a bare list of them). A YAML error names the file only:
    a message quoting the text could quote a key."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raise TokensFileError(NOT_A_TOKENS_FILE.format(path=path)) from None
    items = raw.get("tokens") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise TokensFileError(NOT_A_TOKENS_FILE.format(path=path))
    tokens: list[LegacyToken] = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        key = item.get("key") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(key, str):
            raise TokensFileError(BAD_ENTRY.format(path=path, index=index))
        tokens.append(LegacyToken(name=name, key=key))
    return tokens


def _variables(key: str) -> list[str]:
    """The ``${VAR}`` names in ``key`` (``$${`` is a literal, not a reference)."""
    probe = interpolate_text(key, {})
    return list(probe.missing) if isinstance(probe, Unresolved) else []


def plan(tokens: list[LegacyToken], environ: Mapping[str, str], resolve_env: bool) -> Plan:
    """Sort the entries: a key with ``${VAR}`` is skipped unless ``resolve_env`` and every
    variable is set. Every name is checked first — a bad one refuses the whole file, also when
    its entry would be skipped."""
    for token in tokens:
        if not SECRET_NAME.match(token.name):
            raise VaultRefused(VaultRefusal.INVALID_NAME)
        if token.name == ADMIN_TOKEN:
            raise VaultRefused(VaultRefusal.RESERVED)
    resolved: list[LegacyToken] = []
    skipped: list[Skipped] = []
    for token in tokens:
        variables = _variables(token.key)
        if not variables:
            resolved.append(LegacyToken(name=token.name, key=interpolate_text(token.key, {})))
            continue
        if not resolve_env:
            skipped.append(Skipped(name=token.name, variables=variables))
            continue
        key = interpolate_text(token.key, environ)
        if isinstance(key, Unresolved):
            skipped.append(Skipped(name=token.name, variables=list(key.missing), unset=True))
            continue
        resolved.append(LegacyToken(name=token.name, key=str(key)))
    return Plan(tokens=resolved, skipped=skipped)


def parity(offer: Plan, doc: VaultDocument) -> list[ParityRow]:
    """The ``--verify`` report: each file entry against the vault (``match``, ``drift``,
    ``missing``, ``unresolved``), then ``vault-only``: active manual secrets with no grants — the
    shape an import makes — that the file does not name. Read-only; never a value."""
    rows: list[ParityRow] = []
    named: set[str] = set()
    for token in offer.tokens:
        if token.name in named:
            continue
        named.add(token.name)
        secret = doc.secrets.get(token.name)
        if secret is None:
            rows.append(ParityRow(name=token.name, state=Parity.MISSING))
        elif secret.status == SecretStatus.REVOKED:
            rows.append(ParityRow(name=token.name, state=Parity.DRIFT, detail="revoked in the vault"))
        elif hmac.compare_digest(secret.value.encode(), token.key.encode()):
            rows.append(ParityRow(name=token.name, state=Parity.MATCH))
        else:
            rows.append(ParityRow(name=token.name, state=Parity.DRIFT, detail="value differs"))
    for skip in offer.skipped:
        if skip.name not in named:
            named.add(skip.name)
            rows.append(ParityRow(name=skip.name, state=Parity.UNRESOLVED, detail=skip.reason()))
    for name, secret in sorted(doc.secrets.items()):
        if (name not in named and name != ADMIN_TOKEN and secret.status == SecretStatus.ACTIVE
                and secret.pattern == SecretPattern.MANUAL and not secret.authorized_principals):
            rows.append(ParityRow(name=name, state=Parity.VAULT_ONLY))
    return rows


def all_match(rows: list[ParityRow]) -> bool:
    return all(row.state == Parity.MATCH for row in rows)
