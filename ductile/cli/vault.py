"""``ductile vault ...``: the local vault commands (vault.md §4, §6, §8, §12).

Key-touching commands (``init``, ``rotate-key``, ``rotate-admin-token``, ``adopt``, offline ``set``)
run with the daemon stopped: they take its PID lock for the whole run and append their events to
the state DB as another process (ARCHITECTURE §3) when it exists. ``get``, ``list``, ``status`` and
``audit`` work with the gateway running. The keyless verbs (``set`` without ``--vault/--key``,
``roll``, ``revoke``, ``register-principal``, ``revoke-principal``, ``purge-principal``,
``roll-principal``) need it running: they POST to its ``/vault/*`` with the admin token
(``vault_client``). Values come only from stdin and leave only through ``get``'s stdout (and a new
admin token's); every message goes to stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import App, Parameter

from ductile.cli.output import CliFailure, emit_json, fail

if TYPE_CHECKING:
    from ductile.app.vault import VaultKeeper
    from ductile.config.model import Config
    from ductile.events.log import EventLog
    from ductile.projections.audit import AuditPage
    from ductile.vault.keys import Keyring

app = App(name="vault", help="The secrets vault: init, get, list, status, set, roll, revoke, principals, rotate-key, audit.")

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]
NameOpt = Annotated[str | None, Parameter(name="--name", help="The secret's name.")]
ApiUrlOpt = Annotated[str | None, Parameter(name="--api-url", help=(
    "The daemon: unix:///path.sock or http://host:port (default: the management socket, else api.listen)."))]
TokenOpt = Annotated[str | None, Parameter(name="--token", help="The vault admin token (else $DUCTILE_VAULT_TOKEN).")]

NOT_LOGGED = "no state database yet; the change is not logged (the next boot adopts the vault)"
LIMIT_HELP = "Rows to show, newest first (default 50)."


def _config(config: str | None, config_dir: str | None) -> Config | None:
    """The config, or None when none is found anywhere (then no daemon can clash with us)."""
    from ductile.cli.common import resolve
    from ductile.config.discovery import NOTHING_FOUND

    try:
        return resolve(config, config_dir)
    except CliFailure as exc:
        if exc.message == NOTHING_FOUND and config is None and config_dir is None:
            return None
        raise


def _require_config(config: str | None, config_dir: str | None) -> Config:
    from ductile.cli.common import resolve

    cfg: Config = resolve(config, config_dir)
    return cfg


@contextlib.contextmanager
def _local(action: str, cfg: Config | None) -> Iterator[EventLog | None]:
    """The daemon's PID lock held for the whole command, and the state DB opened as another
    writer when it exists (None, with a note on stderr, when it does not)."""
    from ductile.events.log import EventLog
    from ductile.projections.registry import default_runner
    from ductile.system.pidlock import PidLock, PidLockHeld, pid_path

    if cfg is None:
        print(NOT_LOGGED, file=sys.stderr)
        yield None
        return
    lock_path = pid_path(cfg.state_path)
    try:
        lock = PidLock(lock_path).acquire()
    except PidLockHeld:
        raise CliFailure(f"vault {action}: the daemon appears to be running (could not take the lock {lock_path})"
                         ) from None
    events: EventLog | None = None
    try:
        if cfg.store().exists():
            events = EventLog(cfg.store(), cfg.service.durability, default_runner()).open_sync()
        else:
            print(NOT_LOGGED, file=sys.stderr)
        yield events
    finally:
        if events is not None:
            events.close()
        lock.release()


def _keyring(cfg: Config | None, key: str | None, action: str) -> Keyring:
    from ductile.app.vault import resolve_key
    from ductile.vault.keys import AgeKeyError, load_keyring

    try:
        if key is not None:
            return load_keyring(Path(key).absolute())
        found = resolve_key(cfg, os.environ, Path.home()) if cfg is not None else None
    except AgeKeyError as exc:
        raise CliFailure(str(exc)) from None
    if found is None:
        raise CliFailure(f"vault {action}: no age key was found (set secrets.age_key_file or DUCTILE_AGE_KEY_FILE)")
    return found


def _vault_path(cfg: Config | None, given: str | None) -> Path:
    from ductile.app.vault import vault_path

    if given is not None:
        return Path(given).absolute()
    assert cfg is not None
    return vault_path(cfg)


def _load(path: Path, keyring: Keyring, events: EventLog | None) -> VaultKeeper:
    from ductile.app.vault import VaultKeeper
    from ductile.vault.blob import VaultBlobError

    try:
        return VaultKeeper.load(path, keyring, events)
    except VaultBlobError as exc:
        raise CliFailure(str(exc)) from None


def _refusals() -> tuple[type[Exception], ...]:
    """What a vault command may refuse with: each message is safe to show (never a value)."""
    from ductile.app.vault import VaultReadRefused
    from ductile.commands.errors import Refused
    from ductile.commands.vault_import import TokensFileError
    from ductile.vault.blob import VaultBlobError
    from ductile.vault.keys import AgeKeyError
    from ductile.vault.rotation import RotationAborted

    return (Refused, VaultBlobError, AgeKeyError, RotationAborted, VaultReadRefused, TokensFileError)


# --- local, key-touching -------------------------------------------------------------------------


@app.command
def init(*, vault: Annotated[str | None, Parameter(help="The vault file to create.")] = None,
         key: Annotated[str | None, Parameter(help="The age key to encrypt it to.")] = None,
         config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Create the vault: principal core with the fingerprint nonce, and the admin token (printed once).

    **Examples:**

        ductile vault init --config ./my-gateway
    """
    from ductile.app.vault import init_vault
    from ductile.vault.keys import load_keyring, locate_key

    cfg = _config(config, config_dir)
    if cfg is None and (vault is None or key is None):
        raise CliFailure("vault init: --vault and --key are required (no config found)")
    path = _vault_path(cfg, vault)
    if key is not None:
        key_path = Path(key).absolute()
    else:
        assert cfg is not None
        found = _call(locate_key, os.environ, cfg.secrets.age_key_file, cfg.source.config_dir, Path.home())
        key_path = found.path if found is not None else (cfg.secrets.age_key_file
                                                          or cfg.source.config_dir / "age.key")
    if path.exists():
        raise CliFailure(f'vault: refusing to init — "{path}" already exists')
    if not key_path.exists():
        raise CliFailure(f"vault init: age key {key_path} not found (create one with "
                         f"'ductile secrets keygen --out {key_path}')")
    keyring = _call(load_keyring, key_path)
    with _local("init", cfg) as events:
        _, token = _call(init_vault, path, keyring, events)
    print(f"Wrote vault to {path} (encrypted; core principal + fingerprint nonce seeded)", file=sys.stderr)
    print("Initial admin token (shown once — store it now; it is the vault API credential):", file=sys.stderr)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@app.command(name="rotate-admin-token")
def rotate_admin_token(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Mint a new admin token (printed once); the old one stops working at once.

    **Examples:**

        ductile vault rotate-admin-token
    """
    cfg = _config(config, config_dir)
    if cfg is None:
        raise CliFailure("vault rotate-admin-token: no config found")
    keyring = _keyring(cfg, None, "rotate-admin-token")
    with _local("rotate-admin-token", cfg) as events:
        keeper = _load(_vault_path(cfg, None), keyring, events)
        token = _call(keeper.rotate_admin_token)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@app.command(name="rotate-key")
def rotate_key(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Re-encrypt the vault to a new age key, crash-safe (vault.md §8). Stop the gateway first.

    **Examples:**

        ductile vault rotate-key --config ./my-gateway
    """
    from ductile.vault.rotation import success_lines

    cfg = _config(config, config_dir)
    if cfg is None:
        raise CliFailure("vault rotate-key: no config found")
    keyring = _keyring(cfg, None, "rotate-key")
    with _local("rotate-key", cfg) as events:
        keeper = _load(_vault_path(cfg, None), keyring, events)
        result = _call(keeper.rotate_key)
    for line in success_lines(result):
        print(line, file=sys.stderr)


@app.command
def adopt(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Accept the on-disk vault.age as truth after the boot check refused it (vault.md §3).

    **Examples:**

        ductile vault adopt --config ./my-gateway
    """
    from ductile.vocabulary import VaultActor

    cfg = _require_config(config, config_dir)
    keyring = _keyring(cfg, None, "adopt")
    with _local("adopt", cfg) as events:
        if events is None:
            return  # nothing to adopt into: the next boot adopts the blob
        keeper = _load(_vault_path(cfg, None), keyring, events)
        _call(keeper.adopt, initial=False, actor=VaultActor.CLI)
    print(f"Adopted {keeper.blob.path} as the vault of record", file=sys.stderr)


@app.command(name="import")
def import_(*, tokens: Annotated[str | None, Parameter(help="The legacy tokens.yaml to import.")] = None,
            resolve_env: Annotated[bool, Parameter(help="Read ${ENV} keys from the environment.")] = False,
            verify: Annotated[bool, Parameter(help="Only report parity with the vault (exit 2 unless all match).")
                              ] = False,
            json: bool = False, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """Import legacy tokens.yaml entries as manual secrets with no grants (all or nothing), or
    --verify: a read-only parity report. Key values are never printed.

    **Examples:**

        ductile vault import --tokens tokens.yaml
        ductile vault import --tokens tokens.yaml --verify --json
    """
    from ductile.commands import vault_import
    from ductile.events.types import VaultImported

    if tokens is None:
        raise CliFailure("vault import: --tokens is required")
    cfg = _config(config, config_dir)
    if cfg is None:
        raise CliFailure("vault import: no config found")
    path = Path(tokens)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliFailure(f"vault import: cannot read {path}: {getattr(exc, 'strerror', None) or 'not UTF-8'}"
                         ) from None
    parsed = _call(vault_import.parse_tokens, text, str(path))
    offer = _call(vault_import.plan, parsed, os.environ, resolve_env)
    keyring = _keyring(cfg, None, "import")
    if verify:
        # Read-only: works with the gateway running, takes no lock, writes nothing.
        keeper = _load(_vault_path(cfg, None), keyring, None)
        document = keeper.document()
        assert document is not None
        rows = vault_import.parity(offer, document)
        _parity_report(rows, json)
        return 0 if vault_import.all_match(rows) else 2
    for skip in offer.skipped:
        print(f'Skipped "{skip.name}": {skip.reason()}', file=sys.stderr)
    with _local("import", cfg) as events:
        keeper = _load(_vault_path(cfg, None), keyring, events)
        document = keeper.document()
        assert document is not None
        before = vault_import.parity(offer, document)
        outcome = _call(keeper.import_secrets, offer.entries())
    # The decider's event names what was new; the rest of the file was already there, same value.
    imported = [name for event in outcome.decision.events if isinstance(event, VaultImported) for name in event.names]
    unchanged = [row.name for row in before if row.state == vault_import.Parity.MATCH]
    if json:
        emit_json({"imported": imported, "unchanged": unchanged,
                   "skipped": [{"name": s.name, "variables": s.variables, "reason": s.reason()}
                               for s in offer.skipped]})
    print(f"Imported {len(imported)} secret(s){': ' + ', '.join(imported) if imported else ''}", file=sys.stderr)
    if unchanged:
        print(f"Already in the vault (same value): {', '.join(unchanged)}", file=sys.stderr)
    return 0


def _parity_report(rows: list[Any], json: bool) -> None:
    """``import --verify``: one ``<state>  <name>`` line per entry (file order, then vault-only),
    then the counts; ``--json``: ``{rows: [{name, state, detail}], all_match}``."""
    from ductile.commands.vault_import import Parity, all_match

    if json:
        emit_json({"rows": rows, "all_match": all_match(rows)})
        return
    width = max(len(p) for p in Parity)
    for row in rows:
        print(f"{row.state:<{width}}  {row.name}{'  (' + row.detail + ')' if row.detail else ''}")
    counts = ", ".join(f"{sum(r.state == p for r in rows)} {p}" for p in Parity)
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}: {counts}")


@app.command(name="set")
def set_(*, name: NameOpt = None,
         pattern: Annotated[str, Parameter(help="manual (default) or auto.")] = "",
         principal: Annotated[str | None, Parameter(help="Grants, comma-separated; \"\" clears them.")] = None,
         vault: Annotated[str | None, Parameter(help="Offline mode: the vault file.")] = None,
         key: Annotated[str | None, Parameter(help="Offline mode: the age key.")] = None,
         api_url: ApiUrlOpt = None, token: TokenOpt = None,
         config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Create or update a secret; a manual value is read from stdin (never argv). Through the
    daemon, or offline (daemon stopped) with --vault and --key.

    **Examples:**

        printf %s "$VALUE" | ductile vault set --name api-key --principal echo
        ductile vault set --name webhook-secret --pattern auto
    """
    from ductile.vocabulary import VaultActor

    if name is None:
        raise CliFailure("vault set: --name is required")
    if api_url is not None and (vault is not None or key is not None):
        raise CliFailure("choose one mode: --api-url or --vault/--key")
    grants = None if principal is None else [p.strip() for p in principal.split(",") if p.strip()]
    if vault is None and key is None:
        body: dict[str, Any] = {"name": name, "pattern": pattern}
        if pattern != "auto":
            body["value"] = _stdin_value()
        if grants is not None:
            body["authorized_principals"] = grants
        _post(api_url, token, config, config_dir, "/vault/secret", body)
        print(f'Set secret "{name}"', file=sys.stderr)
        return
    if vault is None or key is None:
        raise CliFailure("offline mode requires BOTH --vault and --key")
    value = "" if pattern == "auto" else _stdin_value()
    cfg = _config(config, config_dir)
    keyring = _keyring(None, key, "set")
    with _local("set", cfg) as events:
        keeper = _load(Path(vault).absolute(), keyring, events)
        _call(keeper.set, name, value=value, pattern=pattern, grants=grants, actor=VaultActor.CLI)
    print(f'Set secret "{name}"', file=sys.stderr)


# --- keyless, through the daemon (vault.md §4) ---------------------------------------------------


def _stdin_value() -> str:
    """All of stdin, less its trailing CR/LF: the only way a value enters (never argv)."""
    return sys.stdin.read().rstrip("\r\n")


def _post(api_url: str | None, token: str | None, config: str | None, config_dir: str | None, path: str,
          body: dict[str, Any]) -> dict[str, Any]:
    from ductile.cli import vault_client

    # The config only supplies the default address: with --api-url none is needed.
    url = vault_client.api_url(api_url, None if api_url else _config(config, config_dir))
    return vault_client.post(url, vault_client.admin_token(token), path, body)


def _is_manual(cfg: Config | None, name: str) -> bool:
    """Whether the event log knows ``name`` as a manual secret (False when it cannot tell: the
    daemon then refuses an empty value itself)."""
    from ductile.cli.common import read_state
    from ductile.projections.vault import fetch_state
    from ductile.vocabulary import SecretPattern

    if cfg is None or not cfg.store().exists():
        return False
    secret = read_state(cfg.store(), fetch_state).meta.secrets.get(name)
    return secret is not None and secret.pattern == SecretPattern.MANUAL


@app.command
def roll(*, name: NameOpt = None, api_url: ApiUrlOpt = None, token: TokenOpt = None, config: ConfigOpt = None,
         config_dir: ConfigDirOpt = None) -> None:
    """Roll a secret: a manual one takes its new value from piped stdin, an auto one is minted.

    **Examples:**

        ductile vault roll --name webhook-secret
        printf %s "$NEW_VALUE" | ductile vault roll --name api-key
    """
    if name is None:
        raise CliFailure("vault roll: --name is required")
    body: dict[str, Any] = {"name": name}
    if sys.stdin.isatty():
        # Never block on a terminal: a manual secret needs a piped value, an auto one none.
        if _is_manual(_config(config, config_dir), name):
            raise CliFailure(f'vault roll: "{name}" is manual; pipe the new value on stdin')
    elif value := _stdin_value():
        body["value"] = value
    _post(api_url, token, config, config_dir, "/vault/secret/roll", body)
    print(f'Rolled secret "{name}"', file=sys.stderr)


def _named(action: str, path: str, done: str, name: str | None, api_url: str | None, token: str | None,
           config: str | None, config_dir: str | None, **extra: str) -> None:
    if name is None:
        raise CliFailure(f"vault {action}: --name is required")
    _post(api_url, token, config, config_dir, path, {"name": name, **extra})
    print(done.format(name=name), file=sys.stderr)


@app.command
def revoke(*, name: NameOpt = None, api_url: ApiUrlOpt = None, token: TokenOpt = None, config: ConfigOpt = None,
           config_dir: ConfigDirOpt = None) -> None:
    """Revoke a secret: its value is cleared and its name can never be reused.

    **Examples:**

        ductile vault revoke --name api-token-ci
    """
    _named("revoke", "/vault/secret/revoke", 'Revoked secret "{name}"', name, api_url, token, config, config_dir)


@app.command(name="register-principal")
def register_principal(*, name: NameOpt = None,
                       kind: Annotated[str, Parameter(help="plugin (default), consumer or gateway.")] = "plugin",
                       api_url: ApiUrlOpt = None, token: TokenOpt = None, config: ConfigOpt = None,
                       config_dir: ConfigDirOpt = None) -> None:
    """Register a principal that secrets can be granted to.

    **Examples:**

        ductile vault register-principal --name echo --kind plugin
    """
    _named("register-principal", "/vault/principal", 'Registered principal "{name}"', name, api_url, token, config,
           config_dir, kind=kind)


@app.command(name="revoke-principal")
def revoke_principal(*, name: NameOpt = None, api_url: ApiUrlOpt = None, token: TokenOpt = None,
                     config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Revoke a principal: its grants stay, delivery to it fails closed.

    **Examples:**

        ductile vault revoke-principal --name old-plugin
    """
    _named("revoke-principal", "/vault/principal/revoke", 'Revoked principal "{name}"', name, api_url, token, config,
           config_dir)


@app.command(name="purge-principal")
def purge_principal(*, name: NameOpt = None, api_url: ApiUrlOpt = None, token: TokenOpt = None,
                    config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Delete a principal and strip its name from every grant.

    **Examples:**

        ductile vault purge-principal --name old-plugin
    """
    _named("purge-principal", "/vault/principal/purge", 'Purged principal "{name}"', name, api_url, token, config,
           config_dir)


@app.command(name="roll-principal")
def roll_principal(*, name: NameOpt = None, api_url: ApiUrlOpt = None, token: TokenOpt = None,
                   config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Roll every auto secret granted to a principal; manual ones are listed to roll by hand.

    **Examples:**

        ductile vault roll-principal --name echo
    """
    if name is None:
        raise CliFailure("vault roll-principal: --name is required")
    answer = _post(api_url, token, config, config_dir, "/vault/principal/roll", {"name": name})
    rolled, skipped = answer.get("rolled", []), answer.get("skipped", [])
    print(f"Rolled {len(rolled)} secret(s): {', '.join(rolled)}", file=sys.stderr)
    if skipped:
        print(f"Skipped (manual — roll each with a value): {', '.join(skipped)}", file=sys.stderr)


# --- local reads ----------------------------------------------------------------------------------


@app.command
def get(*, name: NameOpt = None, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """Print a secret's value; its read is audited before the value is printed.

    **Examples:**

        ductile vault get --name api-token-ci
    """
    from ductile.app.vault import NOT_AUDITED
    from ductile.events.log import EventLog
    from ductile.projections.registry import default_runner

    if name is None:
        raise CliFailure("vault get: --name is required")
    cfg = _require_config(config, config_dir)
    keyring = _keyring(cfg, None, "get")
    events = None
    if cfg.store().exists():
        events = _call(EventLog(cfg.store(), cfg.service.durability, default_runner()).open_sync)
    try:
        keeper = _load(_vault_path(cfg, None), keyring, events)
        if events is None:
            print(NOT_AUDITED, file=sys.stderr)
        value = _call(keeper.read_secret, name)
    finally:
        if events is not None:
            events.close()
    if sys.stdout.isatty():
        print("warning: printing a secret value to a terminal", file=sys.stderr)
    sys.stdout.write(value + "\n")
    sys.stdout.flush()


@app.command(name="list")
def list_(*, principals: bool = False, json: bool = False, config: ConfigOpt = None,
          config_dir: ConfigDirOpt = None) -> None:
    """Secrets (or principals) as the event log knows them: metadata only, never values.

    **Examples:**

        ductile vault list
        ductile vault list --principals --json
    """
    from ductile.cli.common import read_state
    from ductile.cli.output import print_table
    from ductile.projections.vault import fetch_state

    cfg = _require_config(config, config_dir)
    state = read_state(cfg.store(), fetch_state)
    if principals:
        rows = [{"name": n, "kind": p.kind, "status": p.status} for n, p in sorted(state.meta.principals.items())]
        if json:
            emit_json({"principals": rows})
            return
        print_table(["name", "kind", "status"], [[r["name"], r["kind"], r["status"]] for r in rows])
        return
    secrets = [{"name": n, "status": s.status, "pattern": s.pattern, "roll_count": s.roll_count,
                "grants": s.grants, "created_at": s.created_at, "updated_at": s.updated_at,
                "revoked_at": s.revoked_at} for n, s in sorted(state.meta.secrets.items())]
    if json:
        emit_json({"secrets": secrets})
        return
    print_table(["name", "status", "pattern", "roll_count", "grants", "created_at", "updated_at", "revoked_at"],
                [[s["name"], s["status"], s["pattern"], s["roll_count"], ",".join(s["grants"]) or "-",
                  s["created_at"], s["updated_at"], s["revoked_at"] or "-"] for s in secrets])


@app.command
def status(*, json: bool = False, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """The vault's health (vault.md §6): file, key, recipients, counts, agreement, gateway. Never values.

    **Examples:**

        ductile vault status
        ductile vault status --json
    """
    from ductile.app.vault import vault_status

    cfg = _require_config(config, config_dir)
    report, error = vault_status(cfg, os.environ, Path.home())
    document: dict[str, Any] = dict(report)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        if json:
            document["error"] = error
    if json:
        emit_json(document)
    else:
        for field, value in report.items():
            print(f"{field}: {_human(value)}")
    healthy = (error is None and report["exists"] and report["agreement"] != "mismatch"
               and report["decrypts"] is not False)
    return 0 if healthy else 1


def _human(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# --- audit ----------------------------------------------------------------------------------------


@app.command
def audit(*, principal: str | None = None, secret: str | None = None,
          limit: Annotated[int, Parameter(help=LIMIT_HELP)] = 50, json: bool = False,
          config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> None:
    """The vault audit trail (same as ``ductile system vault-audit``).

    **Examples:**

        ductile vault audit
        ductile vault audit --principal echo --json
    """
    vault_audit(principal=principal, secret=secret, limit=limit, json=json, config=config, config_dir=config_dir)


def vault_audit(*, principal: str | None, secret: str | None, limit: int, json: bool, config: str | None,
                config_dir: str | None) -> None:
    """vault.md §12: newest first, filtered by principal (with the secrets ever granted to it) and secret."""
    from ductile.cli.common import read_state
    from ductile.projections.audit import LIMIT_NOT_POSITIVE, AuditQuery, fetch_query

    if limit <= 0:
        raise fail(LIMIT_NOT_POSITIVE, json=json)
    query = AuditQuery(principal=principal, secret=secret, limit=limit)
    cfg = _require_config(config, config_dir)
    page: AuditPage = read_state(cfg.store(), lambda conn: fetch_query(conn, query))
    if json:
        emit_json(page)
        return
    if not page.rows:
        print("No audit facts found.")
        return
    print("Vault audit facts (newest first)")
    if principal:
        print(f"Principal filter: {principal}")
    for row in page.rows:
        about = f" secret={row.secret_name}" if row.secret_name else ""
        print(f"{row.created_at}  {row.op}  {row.principal or ''}{about}  actor={row.actor or ''}  -> {row.outcome}")
        if row.detail:
            print(f"    {row.detail}")


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn`` with the vault's refusals turned into one stderr line and exit 1."""
    try:
        return fn(*args, **kwargs)
    except _refusals() as exc:
        raise CliFailure(str(exc)) from None
