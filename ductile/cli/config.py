"""``ductile config ...``: the config noun (config.md). This release holds ``lock`` (config.md §6.4,
in ``cli/config_lock.py``) and the scoped API token verbs (config.md §10, cli.md §2.3); issue 12
adds ``check``, ``show``, ``get``, ``set`` beside them as commands of ``app``.

``token create`` and ``token revoke`` change two things, the vault secret ``api-token-<N>`` and the
``api.auth.tokens`` entry that names it: through the running gateway's ``/vault/*`` (admin token)
when it holds the PID lock, otherwise locally under that lock with the age key (vault.md §4). The
config file is edited under the write rules of ``ductile.config.editing``. The token's value is
printed once on stdout by ``create`` and appears nowhere else: not in argv, a message or a log.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import App, Parameter

from ductile.cli.config_lock import lock
from ductile.cli.output import CliFailure, emit_json, print_table

if TYPE_CHECKING:
    from ductile.app.vault import VaultKeeper
    from ductile.config.model import Config

app = App(name="config", help="The configuration: show, get, set, schema, validate, init, the integrity lock "
                               "(lock), plugins (plugin list, show) and scoped API tokens (token create, list, revoke).")
token_app = App(name="token", help="Scoped API tokens held in the vault: create, list, revoke.")
app.command(token_app)
app.command(lock, name="lock")
app.command("ductile.cli.config_show:show", name="show")
app.command("ductile.cli.config_show:get", name="get")
app.command("ductile.cli.config_set:set_", name="set")
app.command("ductile.cli.config_schema:schema", name="schema")
app.command("ductile.cli.config_schema:validate", name="validate")
app.command("ductile.cli.config_init:init", name="init")
app.command("ductile.cli.config_plugin:app", name="plugin")
app.command("ductile.cli.config_check:check", name="check")

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]
NameOpt = Annotated[str | None, Parameter(name="--name", help="The token's name (its secret is api-token-NAME).")]
ApiUrlOpt = Annotated[str | None, Parameter(name="--api-url", help="The daemon's vault API (default: its socket).")]
AdminTokenOpt = Annotated[str | None, Parameter(name="--token", help="The vault admin token "
                                                "(default: $DUCTILE_VAULT_TOKEN).")]

TOKEN_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
SECRET_PREFIX = "api-token-"
RELOAD_HINT = "Run 'ductile config lock', then 'ductile system reload'."
NO_API_URL = "--api-url is required (vault writes go through the daemon)"
NO_ADMIN_TOKEN = "vault admin token required (--token or DUCTILE_VAULT_TOKEN)"


def secret_of(name: str) -> str:
    return SECRET_PREFIX + name


# --- create -------------------------------------------------------------------------------------


@token_app.command
def create(*, name: NameOpt = None,
           scopes: Annotated[str | None, Parameter(help="Scopes, comma-separated.")] = None,
           scopes_file: Annotated[str | None, Parameter(name="--scopes-file",
                                                        help='JSON {"scopes": [...]}, or - for stdin.')] = None,
           api_url: ApiUrlOpt = None, token: AdminTokenOpt = None, json: bool = False,
           config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Mint a token, store it in the vault as api-token-NAME and add it to api.auth.tokens.

    **Examples:**

        ductile config token create --name ci --scopes jobs:status:ro
        ductile config token create --name deploy --scopes-file scopes.txt --json
    """
    from ductile.config.api import KNOWN_SCOPES
    from ductile.vault import mint

    if name is None or not TOKEN_NAME.match(name):
        raise CliFailure(f'invalid token name "{name or ""}" (lowercase letters, digits, "-" and "_")')
    wanted = _scopes(scopes, scopes_file)
    for scope in wanted:
        if scope not in KNOWN_SCOPES:
            raise CliFailure(f'unknown scope "{scope}"')
    cfg = _config(config, config_dir, verified=True)
    secret = secret_of(name)
    if _entry_index(cfg, secret) is not None or _secret_status(cfg, secret) is not None:
        raise CliFailure(f'token "{name}" already exists')

    value = mint.secret_value()
    with _vault_writer(cfg, api_url, token, "config token create") as vault:
        if vault.present(secret):  # the projection may lag a vault written with no state DB
            raise CliFailure(f'token "{name}" already exists')
        vault.set(secret, value)
        try:
            _edit_tokens(cfg, lambda entries: entries.append({"secret_ref": secret, "scopes": wanted}),
                         lambda after: _entry_index(after, secret) is not None)
        except CliFailure:
            vault.revoke(secret)  # the config was restored: the new secret must not outlive it
            raise
    if json:
        emit_json({"name": name, "secret_ref": secret, "scopes": wanted, "token": value})
    else:
        sys.stdout.write(value + "\n")
        sys.stdout.flush()
    print(f'Created API token "{name}" (scopes: {", ".join(wanted)}). It is shown only once.', file=sys.stderr)
    print(RELOAD_HINT, file=sys.stderr)


def _scopes(scopes: str | None, scopes_file: str | None) -> list[str]:
    if (scopes is None) == (scopes_file is None):
        raise CliFailure("use exactly one of --scopes or --scopes-file")
    if scopes is not None:
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    else:
        assert scopes_file is not None
        problem = f'scopes file {scopes_file}: expected {{"scopes": [string, ...]}}'
        try:
            text = sys.stdin.read() if scopes_file == "-" else Path(scopes_file).read_text()
            document = jsonlib.loads(text)
        except (OSError, ValueError):
            raise CliFailure(problem) from None
        listed = document.get("scopes") if isinstance(document, dict) else None
        if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
            raise CliFailure(problem)
        wanted = list(listed)
    if not wanted:
        raise CliFailure("at least one scope is required")
    return wanted


# --- list ---------------------------------------------------------------------------------------


@token_app.command(name="list")
def list_(*, json: bool = False, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Every api.auth.tokens entry in merge order with its status; never a value.

    **Examples:**

        ductile config token list
        ductile config token list --json
    """
    cfg = _config(config, config_dir)
    statuses = _secret_statuses(cfg)
    rows: list[dict[str, Any]] = []
    for index, entry in enumerate(cfg.api.tokens):
        if entry.secret_ref is None:
            rows.append({"name": f"api.auth.tokens[{index}]", "source": "literal", "scopes": list(entry.scopes),
                         "status": "literal"})
            continue
        ref = entry.secret_ref
        rows.append({"name": ref.removeprefix(SECRET_PREFIX) if ref.startswith(SECRET_PREFIX) else ref,
                     "secret_ref": ref, "source": "secret_ref", "scopes": list(entry.scopes),
                     "status": statuses.get(ref, "missing")})
    if json:
        emit_json({"tokens": rows})
        return
    print_table(["name", "secret_ref", "scopes", "status"],
                [[r["name"], r.get("secret_ref") or "-", ",".join(r["scopes"]) or "-", r["status"]] for r in rows])


# --- revoke -------------------------------------------------------------------------------------


@token_app.command
def revoke(*, name: NameOpt = None, api_url: ApiUrlOpt = None, token: AdminTokenOpt = None, json: bool = False,
           config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Remove the api.auth.tokens entry of api-token-NAME and revoke that secret.

    **Examples:**

        ductile config token revoke --name ci
    """
    if name is None:
        raise CliFailure("config token revoke: --name is required")
    cfg = _config(config, config_dir)
    secret = secret_of(name)
    index = _entry_index(cfg, secret)
    # An entry already removed by an earlier, unfinished revoke: this run finishes the secret.
    if index is None and _secret_status(cfg, secret) != "active":
        raise CliFailure(f'token "{name}" not found')
    with _vault_writer(cfg, api_url, token, "config token revoke") as vault:
        if index is not None:
            _edit_tokens(cfg, lambda entries: _drop(entries, secret),
                         lambda after: _entry_index(after, secret) is None)
        try:
            vault.revoke(secret)
        except CliFailure as exc:
            raise CliFailure(f"token entry removed but secret {secret} is still active: {exc.message}; "
                             "re-run to finish") from None
    if json:
        emit_json({"name": name, "secret_ref": secret, "revoked": True})
    print(f'Revoked API token "{name}"', file=sys.stderr)
    print(RELOAD_HINT, file=sys.stderr)


def _drop(entries: list[Any], secret: str) -> None:
    entries[:] = [e for e in entries if not (isinstance(e, dict) and e.get("secret_ref") == secret)]


# --- the config file ----------------------------------------------------------------------------


def _config(config: str | None, config_dir: str | None, *, verified: bool = False) -> Config:
    """The config; ``verified``: a full load with §6.3's always-fatal integrity rules (`create`)."""
    from ductile.cli.common import resolve, resolve_verified

    cfg: Config = (resolve_verified if verified else resolve)(config, config_dir)
    return cfg


def _entry_index(cfg: Config, secret: str) -> int | None:
    return next((i for i, t in enumerate(cfg.api.tokens) if t.secret_ref == secret), None)


def _edit_tokens(cfg: Config, change: Any, holds: Any) -> None:
    """``change`` the ``api.auth.tokens`` list of the file that holds ``api:``; the reloaded config
    must satisfy ``holds`` (a later file could override the edit)."""
    from ductile.config.editing import ConfigEditFailed, edit, owning_file

    def apply(data: dict[str, Any]) -> None:
        api = data.setdefault("api", {}) or {}
        data["api"] = api
        auth = api.setdefault("auth", {}) or {}
        api["auth"] = auth
        tokens = auth.get("tokens") or []
        auth["tokens"] = tokens
        change(tokens)

    def check(after: Config) -> None:
        if not holds(after):
            raise ConfigEditFailed("the effective api.auth.tokens does not carry the change")
        # config.md §10: the write rules of `config set --apply`, its validation included.
        from ductile.cli.config_set import validation_report

        errors = validation_report(cfg).errors
        if errors:
            raise ConfigEditFailed(f"{errors[0].field}: {errors[0].message}")

    try:
        edit(cfg.source, owning_file(cfg, "api"), apply, check)
    except (ConfigEditFailed, OSError) as exc:
        raise CliFailure(str(exc)) from None


# --- the vault: through the daemon, or local under its lock -------------------------------------


def _secret_statuses(cfg: Config) -> dict[str, str]:
    """Secret name -> status from the vault projection ({} with no state DB)."""
    from ductile.cli.common import read_state
    from ductile.projections.vault import fetch_state

    if not cfg.store().exists():
        return {}
    state = read_state(cfg.store(), fetch_state)
    return {n: str(s.status) for n, s in state.meta.secrets.items()}


def _secret_status(cfg: Config, secret: str) -> str | None:
    return _secret_statuses(cfg).get(secret)


class _Local:
    """The vault changed in this process: the daemon is stopped and we hold its lock."""

    def __init__(self, keeper: VaultKeeper) -> None:
        self.keeper = keeper

    def present(self, secret: str) -> bool:
        document = self.keeper.document()
        return document is not None and secret in document.secrets

    def set(self, secret: str, value: str) -> None:
        from ductile.vocabulary import VaultActor

        self._call(self.keeper.set, secret, value=value, pattern="manual", grants=["core"], actor=VaultActor.CLI)

    def revoke(self, secret: str) -> None:
        from ductile.commands.vault import RevokeSecret
        from ductile.vocabulary import VaultActor

        self._call(self.keeper.apply, RevokeSecret(name=secret, actor=VaultActor.CLI))

    @staticmethod
    def _call(fn: Any, *args: Any, **kwargs: Any) -> None:
        from ductile.commands.errors import Refused
        from ductile.vault.blob import VaultBlobError

        try:
            fn(*args, **kwargs)
        except (Refused, VaultBlobError) as exc:
            raise CliFailure(str(exc)) from None


class _Remote:
    """The vault changed by the running daemon through ``/vault/*`` with the admin token."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url
        self.admin_token = admin_token

    def present(self, secret: str) -> bool:
        return False  # the daemon refuses a duplicate itself; the projection was checked already

    def set(self, secret: str, value: str) -> None:
        self._post("/vault/secret", {"name": secret, "value": value, "authorized_principals": ["core"],
                                     "pattern": "manual"})

    def revoke(self, secret: str) -> None:
        self._post("/vault/secret/revoke", {"name": secret})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        import httpx

        base, transport = self.url, None
        if self.url.startswith("unix://"):
            socket = self.url.removeprefix("unix://")
            if not socket:
                raise CliFailure("unix:// needs a socket path (unix:///path.sock)")
            base, transport = "http://vault", httpx.HTTPTransport(uds=socket)
        try:
            with httpx.Client(base_url=base, transport=transport, timeout=30) as client:
                resp = client.post(path, json=body, headers={"Authorization": f"Bearer {self.admin_token}"})
        except httpx.HTTPError as exc:
            raise CliFailure(f"cannot reach the gateway at {self.url}: {exc}") from None
        if resp.status_code != 200:
            try:
                error = resp.json().get("error", resp.text)
            except ValueError:
                error = resp.text
            raise CliFailure(f"{path} failed ({resp.status_code}): {error}")


@contextlib.contextmanager
def _vault_writer(cfg: Config, api_url: str | None, admin_token: str | None, action: str) -> Iterator[Any]:
    """``_Local`` under the daemon's PID lock when it is stopped, else ``_Remote``."""
    from ductile.system.pidlock import PidLock, PidLockHeld, pid_path

    try:
        lock = PidLock(pid_path(cfg.state_path)).acquire()
    except PidLockHeld:
        yield _Remote(_api_url(cfg, api_url), _admin_token(admin_token))
        return
    try:
        with _local_keeper(cfg, action) as keeper:
            yield _Local(keeper)
    finally:
        lock.release()


@contextlib.contextmanager
def _local_keeper(cfg: Config, action: str) -> Iterator[VaultKeeper]:
    from ductile.app.vault import VaultKeeper, resolve_key, vault_path
    from ductile.events.log import EventLog
    from ductile.projections.registry import default_runner
    from ductile.vault.blob import VaultBlobError
    from ductile.vault.keys import AgeKeyError

    try:
        keyring = resolve_key(cfg, os.environ, Path.home())
    except AgeKeyError as exc:
        raise CliFailure(str(exc)) from None
    if keyring is None:
        raise CliFailure(f"{action}: no age key was found (set secrets.age_key_file or DUCTILE_AGE_KEY_FILE)")
    events = None
    if cfg.store().exists():
        events = EventLog(cfg.store(), cfg.service.durability, default_runner()).open_sync()
    try:
        try:
            keeper = VaultKeeper.load(vault_path(cfg), keyring, events)
        except VaultBlobError as exc:
            raise CliFailure(str(exc)) from None
        yield keeper
    finally:
        if events is not None:
            events.close()


def _api_url(cfg: Config, given: str | None) -> str:
    from ductile.cli.client import listen_url

    if given:
        return given
    if cfg.api.management_socket.exists():
        return f"unix://{cfg.api.management_socket}"
    if cfg.api.enabled:
        return listen_url(cfg.api.listen)
    raise CliFailure(NO_API_URL)


def _admin_token(given: str | None) -> str:
    token = (given if given is not None else os.environ.get("DUCTILE_VAULT_TOKEN", "")).strip()
    if not token:
        raise CliFailure(NO_ADMIN_TOKEN)
    return token
