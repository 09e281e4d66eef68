"""``ductile secrets``: age keys and age-encrypted config bundles (vault.md §13). Not the vault.

``keygen`` makes an identity, ``encrypt`` seals a file for recipients, ``rotate`` re-encrypts a
sealed config file for new recipients. ``rotate`` refuses ``vault.age``: re-encrypting the vault
here would bypass ``vault rotate-key``'s crash-safe steps and its audit record.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

from cyclopts import App, Parameter

from ductile.cli.output import CliFailure

if TYPE_CHECKING:
    from pyrage.x25519 import Recipient

    from ductile.vault.keys import Keyring

P = ParamSpec("P")
T = TypeVar("T")

app = App(name="secrets", help="age keys and age-encrypted config files (not the vault): keygen, encrypt, rotate.")

NO_RECIPIENTS = "no recipients (use --recipient or --recipients-file)"
KEYGEN_HEADER = "ductile secrets keygen"

Recipients = Annotated[
    list[str] | None, Parameter(name="--recipient", negative="", help="An age1… public key (repeatable).")
]
RecipientsFile = Annotated[
    str | None, Parameter(name="--recipients-file", help="A file of age1… public keys, one a line.")
]


@app.command
def keygen(*, out: Annotated[str | None, Parameter(help="Write the identity here (mode 0600).")] = None) -> None:
    """Make a new age identity: on stdout, or in --out at mode 0600 (never over an existing file).

    The public recipient is printed on stderr either way.

    **Examples:**

        ductile secrets keygen --out ~/.config/ductile/age.key
    """
    from ductile.vault.keys import generate_identity, key_file_text, write_key_file

    identity = generate_identity()
    if out is None:
        sys.stdout.write(key_file_text(identity, KEYGEN_HEADER))
        sys.stdout.flush()
    else:
        _keys_call(write_key_file, Path(out), identity, KEYGEN_HEADER)
    print(f"Public recipient: {identity.to_public()}", file=sys.stderr)


@app.command
def encrypt(
    *,
    recipient: Recipients = None,
    recipients_file: RecipientsFile = None,
    in_: Annotated[str | None, Parameter(name="--in", help="Input file (default: stdin).")] = None,
    out: Annotated[str | None, Parameter(help="Output file, mode 0600 (default: stdout).")] = None,
) -> None:
    """Encrypt a file (armored age) for one or more recipients.

    **Examples:**

        ductile secrets encrypt --recipient age1... --in app.yaml --out app.yaml.age
    """
    from ductile.vault.keys import encrypt as seal
    from ductile.vault.keys import write_private_file

    recipients = _recipients(recipient, recipients_file)
    plaintext = sys.stdin.buffer.read() if in_ is None else _read(Path(in_))
    sealed = _keys_call(seal, plaintext, recipients)
    if out is None:
        sys.stdout.buffer.write(sealed)
        sys.stdout.flush()
    else:
        _keys_call(write_private_file, Path(out), sealed, replace=True)


@app.command
def rotate(
    *,
    key: Annotated[str | None, Parameter(help="The age key that decrypts FILE today.")] = None,
    file: Annotated[str | None, Parameter(help="The age-encrypted config or env file.")] = None,
    recipient: Recipients = None,
    recipients_file: RecipientsFile = None,
    config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None,
) -> None:
    """Re-encrypt an age-encrypted config file for new recipients, in place (atomic, no .bak).

    Refuses the vault (use 'ductile vault rotate-key'). Re-lock the config afterwards.

    **Examples:**

        ductile secrets rotate --file app.yaml.age --recipients-file team.txt
    """
    from ductile.vault.document import looks_like_vault
    from ductile.vault.keys import encrypt as seal
    from ductile.vault.keys import is_age_data, load_keyring, write_private_file

    if key is None:
        raise CliFailure("secrets rotate: --key is required")
    if file is None:
        raise CliFailure("secrets rotate: --file is required")
    recipients = _recipients(recipient, recipients_file)
    target = Path(file)
    keyring = _keys_call(load_keyring, Path(key))
    vault = _configured_vault(config, config_dir, keyring)
    if vault is not None and os.path.realpath(target) == os.path.realpath(vault):
        raise CliFailure(_is_the_vault(file))
    sealed_before = _read(target)
    if not is_age_data(sealed_before):
        raise CliFailure(f"{file} is not age-encrypted")
    plaintext = _keys_call(keyring.decrypt, sealed_before)
    if looks_like_vault(plaintext):
        raise CliFailure(_is_the_vault(file))
    # Written through a symlink to the file it names, so an allowed link (service.allow_symlinks) stays a link.
    destination = Path(os.path.realpath(target))
    _keys_call(write_private_file, destination, _keys_call(seal, plaintext, recipients), replace=True)
    print(f"Rotated {file} to {len(recipients)} recipient(s)")
    print("run 'ductile config lock'")


def _is_the_vault(file: str) -> str:
    return f"rotate: {file} is the ductile vault — use 'ductile vault rotate-key' instead"


def _configured_vault(config: str | None, config_dir: str | None, keyring: Keyring) -> Path | None:
    """The vault path of the config (flags, else discovery); None when no config is found at all."""
    from ductile.config.discovery import NOTHING_FOUND, find_config
    from ductile.config.errors import ConfigError
    from ductile.config.loader import configured_vault_file
    from ductile.config.paths import home_directory
    from ductile.config.plaintext import ConfigKeys

    try:
        source = find_config(config, config_dir)
    except ConfigError as error:
        if config is None and config_dir is None and error.message == NOTHING_FOUND:
            return None  # no config anywhere: no configured vault to protect beyond the content check
        raise CliFailure(str(error), prefix="config error") from None
    environ = dict(os.environ)
    keys = ConfigKeys(environ, source.config_dir, home_directory(environ), keyring)
    try:
        return configured_vault_file(source, environ, keys)
    except ConfigError as error:
        raise CliFailure(str(error), prefix="config error") from None


def _recipients(given: list[str] | None, recipients_file: str | None) -> list[Recipient]:
    from ductile.vault.keys import parse_recipient, read_recipients_file

    recipients = [_keys_call(parse_recipient, text) for text in given or []]
    if recipients_file is not None:
        recipients.extend(_keys_call(read_recipients_file, Path(recipients_file)))
    if not recipients:
        raise CliFailure(NO_RECIPIENTS)
    unique: dict[str, Recipient] = {}
    for one in recipients:  # a key named twice is one recipient: the count printed is the real one
        unique.setdefault(str(one), one)
    return list(unique.values())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliFailure(f"cannot read {path}: {error.strerror or error}") from None


def _keys_call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args)``, an AgeKeyError (whose text never holds key material) as a one-line failure."""
    from ductile.vault.keys import AgeKeyError

    try:
        return function(*args, **kwargs)
    except AgeKeyError as error:
        raise CliFailure(str(error)) from None
