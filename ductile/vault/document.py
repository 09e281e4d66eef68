"""The vault document (vault.md §2): what ``vault.age`` holds once decrypted, as typed Structs.

The YAML shape is the spec's, key for key; keys this release does not know are kept in ``extra``
and written back unchanged, so a vault written by a later release survives a rewrite by this one.
``marshal`` double-quotes every string: values are opaque, and a plain scalar such as ``0o17`` or
``true`` would come back from the YAML 1.2 reader as a number or a boolean.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec
import yaml

from ductile.formats.yaml12 import YamlError, parse_document
from ductile.vocabulary import PrincipalKind, PrincipalStatus, SecretPattern, SecretStatus

SECRET_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
PRINCIPAL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CORE = "core"  # the reserved gateway principal that holds the fingerprint nonce
ADMIN_TOKEN = "core-admin-token"  # the reserved secret: the vault API credential
MAX_VALUE_BYTES = 65536


class _Sealed:
    """A repr without the fields that hold secret material, so a value never reaches a log line, a
    traceback's locals, or a test runner's failure output (vault.md §14)."""

    __slots__ = ()
    _HIDDEN: ClassVar[frozenset[str]] = frozenset()

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            yield name, ("<hidden>" if name in self._HIDDEN and value else value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"

    __str__ = __repr__


class VaultDocumentError(ValueError):
    """The decrypted bytes are not a vault document. Never quotes the document (it holds values)."""


class Secret(_Sealed, msgspec.Struct, frozen=True, kw_only=True):
    _HIDDEN: ClassVar[frozenset[str]] = frozenset({"value"})

    value: str = ""
    authorized_principals: tuple[str, ...] = ()
    status: SecretStatus = SecretStatus.ACTIVE
    pattern: SecretPattern = SecretPattern.MANUAL
    roll_count: int = 0
    created_at: str = ""  # UTC RFC3339, whole seconds
    updated_at: str = ""
    revoked_at: str = ""
    description: str = ""
    extra: dict[str, Any] = {}  # unknown keys, kept on rewrite


class Principal(_Sealed, msgspec.Struct, frozen=True, kw_only=True):
    _HIDDEN: ClassVar[frozenset[str]] = frozenset({"nonce"})

    kind: PrincipalKind
    status: PrincipalStatus = PrincipalStatus.ACTIVE
    nonce: str = ""  # only `core` has one: base64url of 32 CSPRNG bytes
    extra: dict[str, Any] = {}


class VaultDocument(msgspec.Struct, frozen=True, kw_only=True):
    secrets: dict[str, Secret] = {}
    principals: dict[str, Principal] = {}
    extra: dict[str, Any] = {}


def _split(raw: Any, struct: type[msgspec.Struct], where: str) -> dict[str, Any]:
    """The known fields of ``struct`` from a mapping, the rest under ``extra``."""
    if not isinstance(raw, dict):
        raise VaultDocumentError(f"vault document: {where} is not a mapping")
    known = set(struct.__struct_fields__) - {"extra"}
    fields = {k: v for k, v in raw.items() if k in known}
    extra = {str(k): v for k, v in raw.items() if k not in known}
    return {**fields, "extra": extra} if extra else fields


def _entries(raw: Any, struct: type[msgspec.Struct], section: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise VaultDocumentError(f"vault document: {section} is not a mapping")
    out: dict[str, Any] = {}
    for name, body in raw.items():
        where = f"{section}.{name}"
        try:
            out[str(name)] = msgspec.convert(_split(body, struct, where), struct, strict=True)
        except msgspec.ValidationError as exc:
            # msgspec names the field and the expected type, never the offending value.
            raise VaultDocumentError(f"vault document: {where}: {exc}") from None
    return out


def parse(text: bytes | str) -> VaultDocument:
    """The document in decrypted YAML. Fails closed: anything but a vault document is an error."""
    try:
        raw = parse_document(text).value
    except YamlError as exc:
        raise VaultDocumentError(f"vault document is not valid YAML (line {exc.line})") from None
    if raw is None:
        raise VaultDocumentError("vault document is empty")
    top = _split(raw, VaultDocument, "the document")
    return VaultDocument(
        secrets=_entries(top.get("secrets"), Secret, "secrets"),
        principals=_entries(top.get("principals"), Principal, "principals"),
        extra=top.get("extra", {}),
    )


def _plain(struct: msgspec.Struct, always: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        if name == "extra":
            continue
        value = getattr(struct, name)
        if name in always or value not in ("", (), 0):
            out[name] = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, str) else value)
    return {**out, **struct.extra}  # type: ignore[attr-defined]


class _QuotedDumper(yaml.SafeDumper):
    pass


def _quoted_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')


_QuotedDumper.add_representer(str, _quoted_str)


def marshal(doc: VaultDocument) -> bytes:
    """The document as YAML bytes; the same document always marshals to the same bytes."""
    body: dict[str, Any] = {
        "secrets": {
            name: _plain(s, ("value", "authorized_principals", "status", "pattern", "roll_count", "created_at",
                             "updated_at", "revoked_at"))
            for name, s in doc.secrets.items()
        },
        "principals": {name: _plain(p, ("kind", "status")) for name, p in doc.principals.items()},
        **doc.extra,
    }
    text: str = yaml.dump(body, Dumper=_QuotedDumper, sort_keys=False, allow_unicode=True, width=1 << 30)
    return text.encode()


def looks_like_vault(plaintext: bytes) -> bool:
    """A ``principals`` map holding ``core``: the vault's shape (vault.md §2), whatever the file's
    name or path (``secrets rotate`` must never re-encrypt the vault behind its own rotation)."""
    try:
        value = parse_document(plaintext, refuse_duplicate_keys=False).value
    except YamlError:
        return False  # not YAML at all (an env file, say): certainly not a vault document
    principals = value.get("principals") if isinstance(value, dict) else None
    return isinstance(principals, dict) and CORE in principals
