"""Everything the vault mints from the CSPRNG (vault.md §2, §8): one home, so the size and the
encoding of a value, a nonce or a key cannot drift between the decider's caller, `vault init` and
`rotate-key`.
"""

from __future__ import annotations

import base64
import secrets

import pyrage

TOKEN_BYTES = 32  # an auto secret's value and the admin token: 32 CSPRNG bytes
NONCE_BYTES = 32  # the fingerprint nonce of `core`: a BLAKE3 key is exactly 32 bytes


def _base64url(raw: bytes) -> str:
    # Unpadded: 32 bytes give 43 characters, the length vault.md §2 promises for an auto value.
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def secret_value() -> str:
    """A fresh value for an `auto` secret or the admin token: 43 base64url characters, unpadded."""
    return _base64url(secrets.token_bytes(TOKEN_BYTES))


def nonce() -> str:
    """A fresh fingerprint nonce for principal `core`: 32 CSPRNG bytes, base64url (unpadded)."""
    return _base64url(secrets.token_bytes(NONCE_BYTES))


def identity() -> pyrage.x25519.Identity:
    """A fresh age X25519 identity (the new key of `rotate-key`, step 0)."""
    return pyrage.x25519.Identity.generate()
