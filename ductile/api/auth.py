"""Bearer tokens and scopes (api.md §2).

Tokens are compared in constant time against every configured token, whatever matches first,
so the time taken says nothing about which token or how much of it matched.

A token is a literal from the config or a vault ``secret_ref`` (config.md §4.3). Which secret a
``SecretRef`` names was fixed when the config was loaded; its value is read from the vault's
current document on every check, so a roll or revoke answers 401 ``invalid token`` to the old
value from the moment it is committed, without a reload (vault.md §11).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from ductile.api.errors import ApiError, forbidden, unauthorized
from ductile.config.secret_refs import SecretRef, current_value

if TYPE_CHECKING:
    from ductile.vault.document import VaultDocument

IMPLIES: dict[str, tuple[str, ...]] = {
    "plugin:rw": ("plugin:ro", "plugin:catalog:ro", "plugin:invoke:ro"),
    "plugin:ro": ("plugin:catalog:ro",),
    "jobs:rw": ("jobs:ro", "jobs:status:ro", "jobs:tree:ro", "jobs:logs:ro", "jobs:result:ro"),
    "jobs:ro": ("jobs:status:ro", "jobs:tree:ro", "jobs:logs:ro", "jobs:result:ro"),
    "events:rw": ("events:ro",),
    "system:rw": ("system:ro",),
}
KNOWN_SCOPES = frozenset(
    {"*", "plugin:ro", "plugin:rw", "plugin:catalog:ro", "plugin:invoke:ro", "jobs:ro", "jobs:rw", "jobs:status:ro",
     "jobs:tree:ro", "jobs:logs:ro", "jobs:result:ro", "events:ro", "events:rw", "system:ro", "system:rw"}
)


def expand(scopes: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for s in scopes:
        out.add(s)
        out.update(IMPLIES.get(s, ()))
    return frozenset(out)


class Caller(msgspec.Struct, frozen=True):
    scopes: frozenset[str]

    def has(self, *any_of: str) -> bool:
        return "*" in self.scopes or any(s in self.scopes for s in any_of)

    def require(self, *any_of: str) -> None:
        if not self.has(*any_of):
            raise forbidden()


def _no_vault() -> VaultDocument | None:
    return None


class TokenSet:
    """The configured tokens: ``(literal, scopes)`` or ``(SecretRef, scopes)``; ``document`` gives
    the vault's current document (the keeper's) for the references."""

    def __init__(self, tokens: Sequence[tuple[str | SecretRef, Sequence[str]]],
                 document: Callable[[], VaultDocument | None] = _no_vault) -> None:
        self._tokens = [(t.encode() if isinstance(t, str) else t, expand(scopes)) for t, scopes in tokens if t]
        self._document = document
        self._any_ref = any(isinstance(t, SecretRef) for t, _ in self._tokens)  # fixed: read the vault only then

    def __len__(self) -> int:
        return len(self._tokens)

    def match(self, presented: str) -> Caller | None:
        given = presented.encode()
        document = self._document() if self._any_ref else None
        found: Caller | None = None
        for token, scopes in self._tokens:
            if isinstance(token, SecretRef):
                value = current_value(document, token.name)
                if value is None:
                    continue  # revoked or gone: nothing matches it
                token = value.encode()
            if hmac.compare_digest(token, given) and found is None:
                found = Caller(scopes)
        return found


def authorization_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The request's one ``Authorization`` value (ASGI raw headers). Two are ambiguous (which one
    would a proxy in front have checked?), so they fail closed rather than the first one winning."""
    values = [v.decode("latin-1") for k, v in headers if k.lower() == b"authorization"]
    if len(values) > 1:
        raise unauthorized("missing or invalid Authorization header")
    return values[0] if values else None


def extract_bearer(authorization: str | None, query_token: str | None = None, allow_query: bool = False) -> str:
    if authorization and authorization.strip().lower() == "bearer":
        # "Bearer " with an empty token (servers strip the trailing space).
        raise unauthorized("missing or invalid Authorization header")
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "bearer" or not _:
            raise unauthorized("invalid Authorization header format")
        token = rest.strip()
        if not token:
            raise unauthorized("missing or invalid Authorization header")
        return token
    if allow_query and query_token:
        return query_token
    raise unauthorized("missing or invalid Authorization header")


def authenticate(tokens: TokenSet, authorization: str | None, *, query_token: str | None = None,
                 allow_query: bool = False) -> Caller:
    token = extract_bearer(authorization, query_token, allow_query)
    caller = tokens.match(token)
    if caller is None:
        raise unauthorized("invalid token")
    return caller


def require(tokens: TokenSet, authorization: str | None, *any_of: str) -> Caller:
    caller = authenticate(tokens, authorization)
    if any_of:
        caller.require(*any_of)
    return caller


def scopes(*any_of: str) -> Guard:
    """A route guard: a valid bearer token (401 otherwise) carrying one of ``any_of`` (403
    otherwise; no scopes named means any valid token). The caller is kept on the connection's
    state for the handler (``caller`` dependency)."""

    # async although it never awaits: Litestar runs a sync guard in a worker thread (a thread hop
    # and a GIL handoff on every request) for a check that takes microseconds.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = require(connection.app.state.tokens, authorization_header(connection.scope["headers"]), *any_of)
        # The request's state dict itself (Litestar's router creates it): ``connection.state``
        # wraps it in a new ``State``, with its own lock, on every access.
        connection.scope["state"][_CALLER] = caller

    return guard


_CALLER = "caller"


def caller_of(request: Request[Any, Any, Any]) -> Caller:
    """The authenticated caller that the route's ``scopes`` guard stored."""
    caller: Caller = request.scope["state"][_CALLER]
    return caller


__all__ = ["KNOWN_SCOPES", "ApiError", "Caller", "SecretRef", "TokenSet", "authenticate", "authorization_header", "caller_of", "expand", "require",
           "scopes"]
