"""The vault decider (vault.md §2, §5): a command and the decrypted document in, events and the new
document out, or a ``VaultRefused`` with the spec's text.

Pure: no clock, no randomness, no I/O. ``now`` (Unix ns) and ``mint`` come from the caller: ``mint``
returns a fresh 43-character base64url value (32 CSPRNG bytes) each call, and is called only when
the command needs one (an auto value, the nonce, the admin token), so a test passes a counter.

An event exists exactly when the document changes: a repeated revoke, a no-op update or a
roll-principal with nothing to roll returns no events, and the caller writes nothing. Events come
back without blob hashes; the caller encrypts the new document and ``stamp``s them before
committing (vault.md §3 order). ``evolve`` folds the events into the metadata the projection holds;
``metadata_of`` reads the same metadata off a document, so the three can be held equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import msgspec

from ductile.commands.errors import VaultExists, VaultRefusal, VaultRefused
from ductile.events.timefmt import rfc3339_seconds
from ductile.events.types import (
    AdminTokenRotated,
    EventBase,
    PrincipalMeta,
    PrincipalPurged,
    PrincipalRegistered,
    PrincipalRevoked,
    PrincipalRolled,
    SecretMeta,
    SecretRevoked,
    SecretRolled,
    SecretSet,
    VaultAdopted,
    VaultChange,
    VaultImported,
    VaultInitialized,
    VaultMeta,
    VaultWriteAborted,
)
from ductile.projections.vault import VaultState
from ductile.vault.document import (
    ADMIN_TOKEN,
    CORE,
    MAX_VALUE_BYTES,
    PRINCIPAL_NAME,
    SECRET_NAME,
    Principal,
    Secret,
    VaultDocument,
)
from ductile.vocabulary import (
    PrincipalKind,
    PrincipalStatus,
    SecretPattern,
    SecretStatus,
    VaultActor,
    VaultAgreement,
)

Mint = Callable[[], str]

_replace = msgspec.structs.replace


# --- commands ----------------------------------------------------------------------------------
# Raw user input stays ``str`` (pattern, kind) so the decider, not the transport, refuses it with
# the spec's text. ``value`` fields are never part of a repr: a command may be logged by mistake.


class _Command(msgspec.Struct, frozen=True, kw_only=True):
    actor: VaultActor = VaultActor.ADMIN_TOKEN


class _Valued(_Command, frozen=True, kw_only=True):
    """A command with a ``value``: its repr (plain, rich, hypothesis) shows every field but that."""

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        for f in self.__struct_fields__:
            if f != "value":
                yield f, getattr(self, f)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"

    __str__ = __repr__


class InitVault(_Command, frozen=True, kw_only=True):
    vault_path: str  # only for the refusal's text
    actor: VaultActor = VaultActor.CLI


class SetSecret(_Valued, frozen=True, kw_only=True):
    name: str
    value: str = ""
    pattern: str = ""  # manual | auto | "" (create: manual; update: kept)
    grants: list[str] | None = None  # None: kept on update; []: cleared; a list: replaced


class RollSecret(_Valued, frozen=True, kw_only=True):
    name: str
    value: str = ""


class RevokeSecret(_Command, frozen=True, kw_only=True):
    name: str


class RegisterPrincipal(_Command, frozen=True, kw_only=True):
    name: str
    kind: str = PrincipalKind.PLUGIN


class RevokePrincipal(_Command, frozen=True, kw_only=True):
    name: str


class PurgePrincipal(_Command, frozen=True, kw_only=True):
    name: str


class RollPrincipal(_Command, frozen=True, kw_only=True):
    name: str


class RotateAdminToken(_Command, frozen=True, kw_only=True):
    actor: VaultActor = VaultActor.CLI


class ImportSecrets(_Command, frozen=True, kw_only=True):
    """Legacy ``tokens:`` entries as (name, value) pairs, all or nothing."""

    entries: list[tuple[str, str]]
    actor: VaultActor = VaultActor.CLI

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        yield "names", [n for n, _ in self.entries]
        yield "actor", self.actor

    def __repr__(self) -> str:
        return f"ImportSecrets({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"

    __str__ = __repr__


Command = (InitVault | SetSecret | RollSecret | RevokeSecret | RegisterPrincipal | RevokePrincipal | PurgePrincipal
           | RollPrincipal | RotateAdminToken | ImportSecrets)


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What a command did. ``document`` is the new document (values included: keep it in memory);
    ``rolled``/``skipped`` answer ``POST /vault/principal/roll``."""

    events: list[VaultChange]
    document: VaultDocument
    rolled: list[str] = []
    skipped: list[str] = []

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        yield "events", self.events
        yield "rolled", self.rolled
        yield "skipped", self.skipped

    def __repr__(self) -> str:
        return f"Decision({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"

    __str__ = __repr__


# --- checks ------------------------------------------------------------------------------------


def _refuse(refusal: VaultRefusal) -> VaultRefused:
    return VaultRefused(refusal)


def _check_value(pattern: SecretPattern, value: str) -> None:
    """The value rules of set and roll, in §5's order: empty manual, then auto with a value; then
    the size (§2)."""
    if pattern == SecretPattern.MANUAL and value == "":
        raise _refuse(VaultRefusal.EMPTY_VALUE)
    if pattern == SecretPattern.AUTO and value != "":
        raise _refuse(VaultRefusal.AUTO_WITH_VALUE)
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise _refuse(VaultRefusal.TOO_LARGE)


def _pattern(raw: str) -> SecretPattern | None:
    if raw == "":
        return None
    try:
        return SecretPattern(raw)
    except ValueError:
        raise _refuse(VaultRefusal.INVALID_PATTERN) from None


def _grants(raw: Sequence[str], doc: VaultDocument) -> list[str]:
    unique = list(dict.fromkeys(raw))  # a name granted twice is granted once, in first-seen order
    if any(g not in doc.principals for g in unique):
        raise _refuse(VaultRefusal.UNKNOWN_PRINCIPAL)
    return unique


def _secret(doc: VaultDocument, name: str) -> Secret:
    if name == ADMIN_TOKEN:
        raise _refuse(VaultRefusal.RESERVED)
    secret = doc.secrets.get(name)
    if secret is None:
        raise _refuse(VaultRefusal.UNKNOWN_SECRET)
    return secret


def _principal(doc: VaultDocument, name: str) -> Principal:
    if name == CORE:
        raise _refuse(VaultRefusal.RESERVED)
    principal = doc.principals.get(name)
    if principal is None:
        raise _refuse(VaultRefusal.UNKNOWN_PRINCIPAL)
    return principal


def _with_secret(doc: VaultDocument, name: str, secret: Secret) -> VaultDocument:
    return _replace(doc, secrets={**doc.secrets, name: secret})


def _with_principal(doc: VaultDocument, name: str, principal: Principal) -> VaultDocument:
    return _replace(doc, principals={**doc.principals, name: principal})


def _rolled(secret: Secret, value: str, at: str) -> Secret:
    return _replace(secret, value=value, roll_count=secret.roll_count + 1, updated_at=at)


# --- decide ------------------------------------------------------------------------------------


def decide(cmd: Command, doc: VaultDocument | None, now: int, mint: Mint) -> Decision:
    """The events of ``cmd`` on ``doc`` (None: no vault yet) at ``now``, or ``VaultRefused``."""
    at = rfc3339_seconds(now)
    if isinstance(cmd, InitVault):
        return _init(cmd, doc, now, at, mint)
    if doc is None:
        raise ValueError("no vault document: only InitVault runs without one")
    match cmd:
        case SetSecret():
            return _set(cmd, doc, now, at, mint)
        case RollSecret():
            secret = _secret(doc, cmd.name)
            if secret.status == SecretStatus.REVOKED:
                raise _refuse(VaultRefusal.REVOKED)
            _check_value(secret.pattern, cmd.value)
            value = mint() if secret.pattern == SecretPattern.AUTO else cmd.value
            rolled = _rolled(secret, value, at)
            return Decision(events=[SecretRolled(name=cmd.name, roll_count=rolled.roll_count, actor=cmd.actor,
                                                 at=now)],
                            document=_with_secret(doc, cmd.name, rolled))
        case RevokeSecret():
            secret = _secret(doc, cmd.name)
            if secret.status == SecretStatus.REVOKED:
                return Decision(events=[], document=doc)  # final, and the first revoked_at stays
            revoked = _replace(secret, status=SecretStatus.REVOKED, value="", revoked_at=at, updated_at=at)
            return Decision(events=[SecretRevoked(name=cmd.name, actor=cmd.actor, at=now)],
                            document=_with_secret(doc, cmd.name, revoked))
        case RegisterPrincipal():
            return _register(cmd, doc, now)
        case RevokePrincipal():
            principal = _principal(doc, cmd.name)
            if principal.status == PrincipalStatus.REVOKED:
                return Decision(events=[], document=doc)
            return Decision(events=[PrincipalRevoked(name=cmd.name, actor=cmd.actor, at=now)],
                            document=_with_principal(doc, cmd.name, _replace(principal, status=PrincipalStatus.REVOKED)))
        case PurgePrincipal():
            _principal(doc, cmd.name)
            stripped = [n for n, s in doc.secrets.items() if cmd.name in s.authorized_principals]
            secrets = {n: (_replace(s, authorized_principals=tuple(g for g in s.authorized_principals if g != cmd.name))
                           if n in stripped else s) for n, s in doc.secrets.items()}
            principals = {n: p for n, p in doc.principals.items() if n != cmd.name}
            return Decision(events=[PrincipalPurged(name=cmd.name, grants_removed=stripped, actor=cmd.actor, at=now)],
                            document=_replace(doc, secrets=secrets, principals=principals))
        case RollPrincipal():
            return _roll_principal(cmd, doc, now, at, mint)
        case RotateAdminToken():
            token = doc.secrets.get(ADMIN_TOKEN) or Secret(pattern=SecretPattern.AUTO, created_at=at)
            rotated = _rolled(token, mint(), at)
            return Decision(events=[AdminTokenRotated(roll_count=rotated.roll_count, actor=cmd.actor, at=now)],
                            document=_with_secret(doc, ADMIN_TOKEN, rotated))
        case ImportSecrets():
            return _import(cmd, doc, now, at)
    raise TypeError(f"not a vault command: {type(cmd).__name__}")


def _init(cmd: InitVault, doc: VaultDocument | None, now: int, at: str, mint: Mint) -> Decision:
    if doc is not None:
        raise VaultExists(cmd.vault_path)
    fresh = VaultDocument(
        secrets={ADMIN_TOKEN: Secret(value=mint(), pattern=SecretPattern.AUTO, created_at=at, updated_at=at)},
        principals={CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=mint())},
    )
    return Decision(events=[VaultInitialized(actor=cmd.actor, at=now)], document=fresh)


def _set(cmd: SetSecret, doc: VaultDocument, now: int, at: str, mint: Mint) -> Decision:
    if not SECRET_NAME.match(cmd.name):
        raise _refuse(VaultRefusal.INVALID_NAME)
    if cmd.name == ADMIN_TOKEN:
        raise _refuse(VaultRefusal.RESERVED)
    pattern = _pattern(cmd.pattern)
    grants = None if cmd.grants is None else _grants(cmd.grants, doc)
    existing = doc.secrets.get(cmd.name)
    if existing is None:
        pattern = pattern or SecretPattern.MANUAL
        _check_value(pattern, cmd.value)
        value = mint() if pattern == SecretPattern.AUTO else cmd.value
        created = Secret(value=value, authorized_principals=tuple(grants or ()), pattern=pattern,
                         created_at=at, updated_at=at)
        return Decision(events=[SecretSet(name=cmd.name, created=True, pattern=pattern, grants=list(grants or ()),
                                          actor=cmd.actor, at=now)],
                        document=_with_secret(doc, cmd.name, created))
    pattern = pattern or existing.pattern
    _check_value(pattern, cmd.value)
    if existing.status == SecretStatus.REVOKED:
        raise _refuse(VaultRefusal.REVOKED)
    if cmd.value and cmd.value != existing.value:
        raise _refuse(VaultRefusal.IMMUTABLE)
    kept = list(existing.authorized_principals) if grants is None else grants
    updated = _replace(existing, pattern=pattern, authorized_principals=tuple(kept))
    if updated == existing:
        return Decision(events=[], document=doc)
    return Decision(events=[SecretSet(name=cmd.name, created=False, pattern=pattern, grants=kept, actor=cmd.actor,
                                      at=now)],
                    document=_with_secret(doc, cmd.name, _replace(updated, updated_at=at)))


def _register(cmd: RegisterPrincipal, doc: VaultDocument, now: int) -> Decision:
    if cmd.name == CORE:
        raise _refuse(VaultRefusal.RESERVED)
    if not PRINCIPAL_NAME.match(cmd.name):
        raise _refuse(VaultRefusal.INVALID_NAME)
    try:
        kind = PrincipalKind(cmd.kind or PrincipalKind.PLUGIN)
    except ValueError:
        raise _refuse(VaultRefusal.INVALID_KIND) from None
    if cmd.name in doc.principals:
        raise _refuse(VaultRefusal.PRINCIPAL_EXISTS)
    return Decision(events=[PrincipalRegistered(name=cmd.name, kind=kind, actor=cmd.actor, at=now)],
                    document=_with_principal(doc, cmd.name, Principal(kind=kind)))


def _roll_principal(cmd: RollPrincipal, doc: VaultDocument, now: int, at: str, mint: Mint) -> Decision:
    if cmd.name not in doc.principals:
        raise _refuse(VaultRefusal.UNKNOWN_PRINCIPAL)
    granted = [(n, s) for n, s in doc.secrets.items()
               if cmd.name in s.authorized_principals and s.status == SecretStatus.ACTIVE and n != ADMIN_TOKEN]
    rolled = [n for n, s in granted if s.pattern == SecretPattern.AUTO]
    skipped = [n for n, s in granted if s.pattern == SecretPattern.MANUAL]
    if not rolled:
        return Decision(events=[], document=doc, skipped=skipped)
    secrets = {n: (_rolled(s, mint(), at) if n in rolled else s) for n, s in doc.secrets.items()}
    return Decision(events=[PrincipalRolled(name=cmd.name, rolled=rolled, skipped=skipped, actor=cmd.actor, at=now)],
                    document=_replace(doc, secrets=secrets), rolled=rolled, skipped=skipped)


def _import(cmd: ImportSecrets, doc: VaultDocument, now: int, at: str) -> Decision:
    new: dict[str, Secret] = {}
    for name, value in cmd.entries:
        if not SECRET_NAME.match(name):
            raise _refuse(VaultRefusal.INVALID_NAME)
        if name == ADMIN_TOKEN:
            raise _refuse(VaultRefusal.RESERVED)
        _check_value(SecretPattern.MANUAL, value)
        existing = doc.secrets.get(name)
        if existing is not None and existing.status == SecretStatus.REVOKED:
            raise _refuse(VaultRefusal.REVOKED)
        earlier = new.get(name, existing)
        if earlier is not None:
            if earlier.value != value:
                raise _refuse(VaultRefusal.IMMUTABLE)
            continue
        new[name] = Secret(value=value, created_at=at, updated_at=at)
    if not new:
        return Decision(events=[], document=doc)
    return Decision(events=[VaultImported(names=list(new), actor=cmd.actor, at=now)],
                    document=_replace(doc, secrets={**doc.secrets, **new}))


# --- the blob's side ---------------------------------------------------------------------------

E = TypeVar("E", bound=VaultChange)


def stamp(events: Iterable[E], blob_sha256: str, prev_blob_sha256: str) -> list[E]:
    """The events of one blob write, carrying the new blob's hash and the one it replaced."""
    return [_replace(e, blob_sha256=blob_sha256, prev_blob_sha256=prev_blob_sha256) for e in events]


def metadata_of(doc: VaultDocument) -> VaultMeta:
    """The document's metadata: what the log and the projection know of it (no value, no nonce)."""
    return VaultMeta(
        secrets={n: SecretMeta(status=s.status, pattern=s.pattern, roll_count=s.roll_count,
                               grants=list(s.authorized_principals), created_at=s.created_at,
                               updated_at=s.updated_at, revoked_at=s.revoked_at, description=s.description)
                 for n, s in doc.secrets.items()},
        principals={n: PrincipalMeta(kind=p.kind, status=p.status) for n, p in doc.principals.items()},
    )


def adopted(known: VaultMeta, on_disk: VaultDocument, initial: bool, actor: VaultActor, now: int) -> VaultAdopted:
    """``VaultAdopted`` for the blob on disk: its metadata, and the names that differ from ``known``
    (the projection's). The caller stamps it with the on-disk blob's hash."""
    meta = metadata_of(on_disk)
    old = {**{f"principal:{n}": p for n, p in known.principals.items()}, **known.secrets}
    new = {**{f"principal:{n}": p for n, p in meta.principals.items()}, **meta.secrets}
    return VaultAdopted(
        initial=initial, meta=meta, actor=actor, at=now,
        added=sorted(n for n in new if n not in old),
        removed=sorted(n for n in old if n not in new),
        changed=sorted(n for n in new if n in old and new[n] != old[n]),
    )


def aborted(state: VaultState, on_disk: VaultDocument, now: int) -> VaultWriteAborted:
    """``VaultWriteAborted`` for a change whose blob never landed: back to ``on_disk`` (the last
    blob written). The caller stamps it with that blob's hash (``state.prev_blob_sha256``)."""
    return VaultWriteAborted(aborted=state.last_change, meta=metadata_of(on_disk), actor=VaultActor.CORE, at=now)


# vault.md §3: boot's refusal, and selfcheck's vault_agreement detail.
MISMATCH_REFUSAL = ("vault.age does not match the event log (modified outside Ductile?); restore the matching "
                    "vault.age or run 'ductile vault adopt'")


def agreement(state: VaultState, on_disk_sha256: str) -> VaultAgreement:
    """The boot check of vault.md §3: the on-disk blob's sha256 against the last vault event."""
    if not state.last_change:
        return VaultAgreement.NOT_ADOPTED
    if on_disk_sha256 == state.blob_sha256:
        return VaultAgreement.AGREE
    if state.prev_blob_sha256 and on_disk_sha256 == state.prev_blob_sha256:
        return VaultAgreement.UNLANDED_WRITE
    return VaultAgreement.MISMATCH


# --- evolve ------------------------------------------------------------------------------------


def _meta_with(meta: VaultMeta, secrets: dict[str, SecretMeta] | None = None,
               principals: dict[str, PrincipalMeta] | None = None) -> VaultMeta:
    return VaultMeta(secrets=meta.secrets if secrets is None else secrets,
                     principals=meta.principals if principals is None else principals)


def _evolve_meta(meta: VaultMeta, e: EventBase) -> VaultMeta:
    at = rfc3339_seconds(e.at)
    s, p = meta.secrets, meta.principals
    match e:
        case VaultInitialized():
            return _meta_with(meta, {**s, ADMIN_TOKEN: SecretMeta(pattern=SecretPattern.AUTO, created_at=at,
                                                                  updated_at=at)},
                              {**p, CORE: PrincipalMeta(kind=PrincipalKind.GATEWAY)})
        case PrincipalRegistered():
            return _meta_with(meta, principals={**p, e.name: PrincipalMeta(kind=e.kind)})
        case PrincipalRevoked() if e.name in p:
            return _meta_with(meta, principals={**p, e.name: _replace(p[e.name], status=PrincipalStatus.REVOKED)})
        case PrincipalPurged():
            return VaultMeta(
                secrets={n: (_replace(x, grants=[g for g in x.grants if g != e.name]) if n in e.grants_removed else x)
                         for n, x in s.items()},
                principals={n: x for n, x in p.items() if n != e.name})
        case PrincipalRolled():
            return _meta_with(meta, {n: (_replace(x, roll_count=x.roll_count + 1, updated_at=at) if n in e.rolled
                                         else x) for n, x in s.items()})
        case SecretSet() if e.created:
            return _meta_with(meta, {**s, e.name: SecretMeta(pattern=e.pattern, grants=e.grants, created_at=at,
                                                             updated_at=at)})
        case SecretSet() if e.name in s:
            return _meta_with(meta, {**s, e.name: _replace(s[e.name], pattern=e.pattern, grants=e.grants,
                                                           updated_at=at)})
        case SecretRolled() if e.name in s:
            return _meta_with(meta, {**s, e.name: _replace(s[e.name], roll_count=e.roll_count, updated_at=at)})
        case AdminTokenRotated():
            # A vault that lost its token gets a new one (the decider mints it the same way).
            token = s.get(ADMIN_TOKEN) or SecretMeta(pattern=SecretPattern.AUTO, created_at=at)
            return _meta_with(meta, {**s, ADMIN_TOKEN: _replace(token, roll_count=e.roll_count, updated_at=at)})
        case SecretRevoked() if e.name in s:
            return _meta_with(meta, {**s, e.name: _replace(s[e.name], status=SecretStatus.REVOKED, revoked_at=at,
                                                           updated_at=at)})
        case VaultImported():
            return _meta_with(meta, {**s, **{n: SecretMeta(created_at=at, updated_at=at) for n in e.names}})
        case VaultAdopted() | VaultWriteAborted():
            return e.meta
    return meta


def evolve(state: VaultState | None, e: EventBase) -> VaultState:
    """One vault event folded into the metadata (``projections.vault`` is the same fold in SQL)."""
    state = state or VaultState()
    if not isinstance(e, VaultChange):
        return state
    meta = _evolve_meta(state.meta, e)
    if e.blob_sha256:
        return VaultState(meta=meta, blob_sha256=e.blob_sha256, prev_blob_sha256=e.prev_blob_sha256,
                          last_change=type(e).__name__)
    return _replace(state, meta=meta, last_change=type(e).__name__)


def fold(events: Iterable[EventBase]) -> VaultState:
    state = VaultState()
    for e in events:
        state = evolve(state, e)
    return state
