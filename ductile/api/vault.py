"""The vault management API, ``/vault/*`` (vault.md §7): the data-plane writes of §5 and the audit
trail of §12, for the admin token only.

Auth is a guard of its own, not ``auth.scopes``: API tokens, even ``*``, never reach a vault
route. The admin token is compared in constant time on bytes, also when there is none to compare
with (a dummy stands in), so the answer's timing says nothing about the token or whether one
exists. Each 401 is audited (``auth_failed``), at most once per remote address per minute.

No route answers a value: the 200 bodies carry names and statuses only, the refusals the
decider's texts, which never quote a value.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, Router
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromQuery, QueryParameter

from ductile.api.auth import authorization_header, extract_bearer
from ductile.api.body import json_object
from ductile.api.context import Facade
from ductile.api.errors import ApiError, internal, unauthorized
from ductile.api.handlers import get, post
from ductile.api.jobs import MAX_LIMIT
from ductile.api.schemas import SECURED, body_of, errors
from ductile.app.facade import VaultUnavailable
from ductile.commands.errors import VaultRefused
from ductile.commands.vault import (
    Command,
    PurgePrincipal,
    RegisterPrincipal,
    RevokePrincipal,
    RevokeSecret,
    RollPrincipal,
    RollSecret,
    SetSecret,
)
from ductile.projections.audit import DEFAULT_LIMIT, AuditPage, AuditQuery
from ductile.vault.blob import MODIFIED_EXTERNALLY, BlobModifiedExternally, BlobWriteFailed
from ductile.vault.document import ADMIN_TOKEN, VaultDocument
from ductile.vocabulary import PrincipalKind, SecretStatus

INVALID_ADMIN_TOKEN = "invalid vault admin token"
VAULT_WRITE_FAILED = "vault write failed"
VAULT_UNAVAILABLE = str(VaultUnavailable())
# The API's 409 adds what to do about it (vault.md §7): the daemon cannot fix the file itself.
MODIFIED_ANSWER = f"{MODIFIED_EXTERNALLY}; stop the gateway and run 'ductile vault adopt'"
# Stands in for the admin token when there is none (or it is not active): the comparison still
# runs, so a missing token costs the same time as a wrong one.
_DUMMY_TOKEN = b"\x00" * 43


def admin_token_matches(presented: str, document: VaultDocument | None) -> bool:
    """Whether ``presented`` is the vault's active admin token, in constant time: one
    ``hmac.compare_digest`` on bytes whatever the inputs, and the verdict combined after it."""
    secret = document.secrets.get(ADMIN_TOKEN) if document is not None else None
    usable = secret is not None and secret.status == SecretStatus.ACTIVE and bool(secret.value)
    expected = secret.value.encode() if usable and secret is not None else _DUMMY_TOKEN
    given = presented.encode()
    same = hmac.compare_digest(expected, given)
    return same & usable & bool(given)


def _remote(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = connection.client
    # The management socket has no peer address: every local caller shares one rate-limit slot.
    return client.host if client is not None and client.host else "local"


async def admin_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The guard of every ``/vault/*`` route: 503 without a vault, else the admin token or a 401."""
    ductile = connection.app.state.ductile
    keeper = ductile.vault.keeper
    if keeper is None:
        raise ApiError(503, VAULT_UNAVAILABLE)
    try:
        presented = extract_bearer(authorization_header(connection.scope["headers"]))
        if not admin_token_matches(presented, keeper.document()):
            raise unauthorized(INVALID_ADMIN_TOKEN)
    except ApiError:
        await ductile.vault.auth_failed(connection.url.path, _remote(connection))
        raise


# --- request bodies (vault.md §7) ------------------------------------------------------------


class _Named(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    name: str = ""  # "" is refused by the decider with §5's text ("vault: invalid name")


class PrincipalBody(_Named, frozen=True, kw_only=True):
    kind: str = PrincipalKind.PLUGIN


class SecretBody(_Named, frozen=True, kw_only=True):
    value: str = ""
    authorized_principals: list[str] | None = None  # absent: grants kept; []: cleared
    pattern: str = ""


class RollBody(_Named, frozen=True, kw_only=True):
    value: str = ""


class NameBody(_Named, frozen=True, kw_only=True):
    pass


class Changed(msgspec.Struct, frozen=True):
    """The 200 body of every write but ``principal/roll``: the name and what happened to it."""

    name: str
    status: str


class PrincipalRolled(msgspec.Struct, frozen=True):
    name: str
    rolled: list[str]
    skipped: list[str]


_STRING = Schema(type=OpenAPIType.STRING)
_NAME_ONLY = Schema(type=OpenAPIType.OBJECT, properties={"name": _STRING}, required=["name"])
_PRINCIPAL = Schema(type=OpenAPIType.OBJECT, properties={"name": _STRING, "kind": _STRING}, required=["name"])
_SECRET = Schema(type=OpenAPIType.OBJECT, required=["name"], properties={
    "name": _STRING, "value": _STRING, "pattern": _STRING,
    "authorized_principals": Schema(type=OpenAPIType.ARRAY, items=_STRING)})
_ROLL = Schema(type=OpenAPIType.OBJECT, properties={"name": _STRING, "value": _STRING}, required=["name"])
_WRITE_ERRORS = errors(400, 401, 409, 413, 500, 503, e400="a vault.md §5 refusal or a malformed body",
                       e401="not the vault admin token", e409=MODIFIED_EXTERNALLY,
                       e503="vault not available")


T = TypeVar("T")


async def _body(request: Request[Any, Any, Any], shape: type[T]) -> T:
    raw = await json_object(request)
    try:
        return msgspec.convert(raw, shape)
    except msgspec.ValidationError as exc:
        # msgspec's text names the field and the expected type, never the value given.
        raise ApiError(400, f"invalid request body: {exc}") from None


async def _apply(ductile: Any, cmd: Command) -> Any:
    """Run one change through the keeper's serialised write path; map its failures to §7's answers."""
    try:
        return await ductile.vault.apply(cmd)
    except VaultUnavailable:
        raise ApiError(503, VAULT_UNAVAILABLE) from None
    except VaultRefused as exc:
        raise ApiError(400, str(exc)) from None
    except BlobModifiedExternally:
        raise ApiError(409, MODIFIED_ANSWER) from None
    except BlobWriteFailed as exc:
        raise internal(VAULT_WRITE_FAILED, exc) from None


@post("/vault/principal", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_PRINCIPAL))
async def register_principal(ductile: Facade, request: Request[Any, Any, Any]) -> Changed:
    body = await _body(request, PrincipalBody)
    await _apply(ductile, RegisterPrincipal(name=body.name, kind=body.kind))
    return Changed(body.name, "principal_registered")


@post("/vault/secret", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_SECRET))
async def set_secret(ductile: Facade, request: Request[Any, Any, Any]) -> Changed:
    body = await _body(request, SecretBody)
    await _apply(ductile, SetSecret(name=body.name, value=body.value, pattern=body.pattern,
                                    grants=body.authorized_principals))
    return Changed(body.name, "set")


@post("/vault/secret/roll", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_ROLL))
async def roll_secret(ductile: Facade, request: Request[Any, Any, Any]) -> Changed:
    body = await _body(request, RollBody)
    await _apply(ductile, RollSecret(name=body.name, value=body.value))
    return Changed(body.name, "rolled")


@post("/vault/secret/revoke", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_NAME_ONLY))
async def revoke_secret(ductile: Facade, request: Request[Any, Any, Any]) -> Changed:
    body = await _body(request, NameBody)
    await _apply(ductile, RevokeSecret(name=body.name))
    return Changed(body.name, "revoked")


@post("/vault/principal/revoke", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_NAME_ONLY))
async def revoke_principal(ductile: Facade, request: Request[Any, Any, Any]) -> Changed:
    body = await _body(request, NameBody)
    await _apply(ductile, RevokePrincipal(name=body.name))
    return Changed(body.name, "principal_revoked")


@post("/vault/principal/purge", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_NAME_ONLY))
async def purge_principal(ductile: Facade, request: Request[Any, Any, Any]) -> Changed:
    body = await _body(request, NameBody)
    await _apply(ductile, PurgePrincipal(name=body.name))
    return Changed(body.name, "principal_purged")


@post("/vault/principal/roll", status_code=200, responses=_WRITE_ERRORS, operation_class=body_of(_NAME_ONLY))
async def roll_principal(ductile: Facade, request: Request[Any, Any, Any]) -> PrincipalRolled:
    body = await _body(request, NameBody)
    outcome = await _apply(ductile, RollPrincipal(name=body.name))
    return PrincipalRolled(body.name, list(outcome.decision.rolled), list(outcome.decision.skipped))


@get("/vault/audit", responses=errors(400, 401, 500, 503, e401="not the vault admin token",
                                      e503="vault not available"))
async def audit(ductile: Facade, principal: FromQuery[str | None] = None, secret: FromQuery[str | None] = None,
                limit: Annotated[str | None, QueryParameter(required=False,
                                                            description="rows, newest first (default 50)")] = None,
                ) -> AuditPage:
    """vault.md §12's filters: ``principal`` (its rows and those of any secret ever granted to
    it), ``secret``; both must hold when both are given."""
    count = DEFAULT_LIMIT
    if limit is not None:
        if not limit.isdigit() or int(limit) <= 0:
            raise ApiError(400, "limit must be > 0")
        if int(limit) > MAX_LIMIT:
            raise ApiError(400, f"limit must be <= {MAX_LIMIT}")
        count = int(limit)
    query = AuditQuery(principal=principal or None, secret=secret or None, limit=count)
    try:
        return await ductile.vault.audit(query)
    except Exception as exc:
        raise internal("failed to read the vault audit", exc) from None


def vault_router() -> Router:
    """Every ``/vault/*`` route behind the admin-token guard (and documented as bearer-secured)."""
    return Router("/", guards=[admin_token], security=SECURED, route_handlers=[
        register_principal, set_secret, roll_secret, revoke_secret, revoke_principal, purge_principal,
        roll_principal, audit])
