"""``ductile system selfcheck`` and ``GET /system/selfcheck`` (operations.md §5).

``offline_checks`` is the deploy gate: every check of §5's table, in order, with the PID lock held
for the run so the gateway cannot start mid-check; the state DB is only ever opened read-only.
``online_checks`` is the subset that is safe beside a running gateway (chain, replay on a read
snapshot, freshness, vault agreement). No SQL lives here: the log, the projections and their
replay own it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path

import msgspec
from msgspec import UNSET, UnsetType

from ductile.commands import vault as vault_decider
from ductile.config.discovery import find_config
from ductile.config.errors import ConfigError
from ductile.config.loader import DEFAULT_VAULT_FILE, load_config
from ductile.config.model import Config
from ductile.events.log import first_broken_stream, newest_recorded_at, read_head, read_snapshot, verify_chain
from ductile.events.postgres_store import PostgresStore, PostgresUnavailable
from ductile.events.schema import EVENTS_DDL, integrity_problems
from ductile.events.sqlite_store import connect
from ductile.events.store import is_database_error
from ductile.events.timefmt import NS
from ductile.projections import queue as queue_projection
from ductile.projections import replay, replay_postgres
from ductile.projections import vault as vault_projection
from ductile.projections.registry import ALL as PROJECTIONS
from ductile.system.pidlock import PidLock, PidLockHeld, holder, pid_path
from ductile.vault.blob import BlobFile, VaultBlobError, recipient_count, sha256_hex
from ductile.vault.keys import AgeKeyError, resolve_keyring
from ductile.vocabulary import VaultAgreement

Progress = Callable[[int, int], None]

GATEWAY_RUNNING = "gateway is running (pid {pid}); stop it first — selfcheck needs exclusive access to the state DB"
NO_KEY = "age key not found; vault metadata not compared"
UNLANDED = "last write did not land; the next boot records the abort"
NOT_ADOPTED = "not yet adopted (the next boot adopts it)"

# §5's table, in order.
OFFLINE_CHECKS = ("config_discovery", "config_load", "pid_lock", "db_integrity", "db_schema",
                  "queue_terminal_freshness", "event_log_chain", "projection_replay", "vault_agreement")
_ERROR_CHARS = 200
ONLINE_CHECKS = ("event_log_chain", "projection_replay", "queue_terminal_freshness", "vault_agreement")


class CheckStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"
    SKIPPED = "skipped"


class SelfcheckCheck(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One check as the CLI's ``--json`` and ``/system/selfcheck`` print it."""

    name: str
    ok: bool
    status: CheckStatus
    path: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET


def _ok(name: str, detail: str | None = None, path: Path | None = None) -> SelfcheckCheck:
    return _check(name, CheckStatus.OK, detail, path)


def _fail(name: str, detail: str, path: Path | None = None) -> SelfcheckCheck:
    return _check(name, CheckStatus.FAIL, detail, path)


def _check(name: str, status: CheckStatus, detail: str | None, path: Path | None) -> SelfcheckCheck:
    return SelfcheckCheck(name=name, ok=status == CheckStatus.OK, status=status,
                          path=UNSET if path is None else str(path), detail=detail or UNSET)


def _skipped(names: tuple[str, ...], why: str) -> list[SelfcheckCheck]:
    return [_check(n, CheckStatus.SKIPPED, why, None) for n in names]


class _Progress:
    """One bar over the two passes of the log (the chain, then the replay): 2 x head events."""

    def __init__(self, report: Progress | None, head: int) -> None:
        self.report, self.head = report, head

    def chain(self, done: int, _total: int) -> None:
        if self.report is not None:
            self.report(done, 2 * self.head)

    def replay(self, done: int, _total: int) -> None:
        if self.report is not None:
            self.report(self.head + done, 2 * self.head)


# --- the checks -----------------------------------------------------------------------------------


def chain_check(conn: sqlite3.Connection, progress: Progress | None = None) -> SelfcheckCheck:
    """``event_log_chain``: gap-free positions, every chain value recomputes, contiguous streams."""
    report = verify_chain(conn, progress)
    if not report.ok:
        return _fail("event_log_chain", f"{report.problem} (first bad position {report.position})")
    broken = first_broken_stream(conn)
    if broken is not None:
        return _fail("event_log_chain", f"stream {broken.stream!r} versions are not contiguous "
                                        f"({broken.events} events, {broken.first}..{broken.last})")
    return _ok("event_log_chain", f"{report.events} events, head {report.head}")


def replay_check(state_path: Path, progress: Progress | None = None) -> SelfcheckCheck:
    """``projection_replay``: every event folded into fresh projections equals the stored ones."""
    outcome = replay.replay_and_compare(state_path, PROJECTIONS, progress)
    return (_ok if outcome.ok else _fail)("projection_replay", outcome.detail)


def freshness_check(conn: sqlite3.Connection, config: Config) -> SelfcheckCheck:
    """``queue_terminal_freshness``, measured back from the newest event so downtime never fails it."""
    newest = newest_recorded_at(conn)
    if newest is None:
        return _ok("queue_terminal_freshness", "empty event log")
    if config.service.job_queue_retention <= 0:
        return _ok("queue_terminal_freshness", "job_queue_retention disabled")
    limit = int((config.service.job_queue_retention + 2 * config.service.tick_interval) * NS)
    stale = queue_projection.stale_terminal(conn, newest - limit)
    if stale.count:
        return _fail("queue_terminal_freshness", f"{stale.count} stale terminal queue row(s), oldest {stale.oldest}")
    return _ok("queue_terminal_freshness", "no stale terminal queue rows")


def vault_check(conn: sqlite3.Connection, config: Config, environ: Mapping[str, str], home: Path,
                built: bool = True) -> SelfcheckCheck:
    """``vault_agreement``: vault.md §3 between ``vault.age`` and the log, then (with the key) the
    decrypted metadata against the vault projection and exactly one recipient. ``built`` False: a
    database from a release before the vault, whose log therefore holds no vault event."""
    name = "vault_agreement"
    path = config.secrets.vault_file or config.source.config_dir / DEFAULT_VAULT_FILE
    state = vault_projection.load_state(conn.cursor()) if built else vault_projection.VaultState()
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        if not state.last_change:
            return _ok(name, "no vault", path)
        return _fail(name, f"{path} is missing but the event log records a vault", path)
    except OSError as exc:
        return _fail(name, f"cannot read {path}: {exc}", path)
    agreement = vault_decider.agreement(state, sha256_hex(blob))
    if agreement == VaultAgreement.MISMATCH:
        return _fail(name, vault_decider.MISMATCH_REFUSAL, path)
    if agreement == VaultAgreement.NOT_ADOPTED:
        return _ok(name, NOT_ADOPTED, path)
    if agreement == VaultAgreement.UNLANDED_WRITE:
        return _ok(name, UNLANDED, path)
    try:
        keyring = resolve_keyring(environ, config.secrets.age_key_file, config.source.config_dir, home)
    except AgeKeyError as exc:
        return _fail(name, f"{NO_KEY}: {exc}", path)
    if keyring is None:
        return _fail(name, NO_KEY, path)
    try:
        document = BlobFile(path).read(keyring.identities)
        recipients = recipient_count(blob, path)
    except VaultBlobError as exc:
        return _fail(name, str(exc), path)
    if recipients != 1:
        return _fail(name, f"{path} has {recipients} recipients, expected exactly 1", path)
    if vault_decider.metadata_of(document) != state.meta:
        return _fail(name, "decrypted vault metadata differs from the vault projection", path)
    return _ok(name, f"agrees with the event log ({len(state.meta.secrets)} secret(s), "
                     f"{len(state.meta.principals)} principal(s))", path)


def _guarded(name: str, run: Callable[[], SelfcheckCheck]) -> SelfcheckCheck:
    """A check whose read failed is failed with the reason, never an exception out of selfcheck."""
    try:
        return run()
    except Exception as exc:
        if not is_database_error(exc):
            raise
        # Capped: a tampered row's decode error quotes the row's bytes.
        return _fail(name, f"read failed: {str(exc)[:_ERROR_CHARS]}")


# --- the runs -------------------------------------------------------------------------------------


def online_checks(open_reader: Callable[[], sqlite3.Connection], state: Path | PostgresStore, config: Config,
                  environ: Mapping[str, str], home: Path) -> list[SelfcheckCheck]:
    """The checks that are safe beside a running gateway, on read snapshots of the state DB (the
    replay takes its own). api.md's shape has no ``path``."""
    try:
        conn = open_reader()
    except Exception as exc:
        if not is_database_error(exc):
            raise
        return _skipped(ONLINE_CHECKS, f"cannot open the state DB read-only: {exc}")
    try:
        with read_snapshot(conn):
            checks = [
                _guarded("event_log_chain", lambda: chain_check(conn)),
                _guarded("projection_replay", lambda: replay_check(state) if isinstance(state, Path)
                         else _server_replay_check(state)),
                _guarded("queue_terminal_freshness", lambda: freshness_check(conn, config)),
                _guarded("vault_agreement", lambda: vault_check(conn, config, environ, home)),
            ]
    except Exception as exc:
        if not is_database_error(exc):
            raise
        return _skipped(ONLINE_CHECKS, f"state DB not readable: {exc}")
    finally:
        conn.close()
    return [msgspec.structs.replace(c, path=UNSET) for c in checks]


def offline_checks(
    config_path: str | None, config_dir: str | None, environ: Mapping[str, str], home: Path,
    progress: Progress | None = None, *, lock_held: bool = False,
) -> list[SelfcheckCheck]:
    """Every check of §5, in order (config discovery as config.md §1, loaded as ``system status``
    loads it). ``lock_held``: the caller (``system restore``) already holds the PID lock for its
    whole run; a second flock from this process would see it as another instance's."""
    checks: list[SelfcheckCheck] = []
    try:
        source = find_config(config_path, config_dir)
    except ConfigError as exc:
        return [_fail("config_discovery", str(exc)), *_skipped(OFFLINE_CHECKS[1:], "no config")]
    root = source.root_file
    checks.append(_ok("config_discovery", f"source={source.source}", root))
    try:
        config = load_config(source)
    except ConfigError as exc:
        return [*checks, _fail("config_load", str(exc), root), *_skipped(OFFLINE_CHECKS[2:], "config did not load")]
    checks.append(_ok("config_load", path=root))
    lock_path = pid_path(config.state_path)
    if lock_held:
        checks.append(_ok("pid_lock", "held by this process for its run", lock_path))
        return [*checks, *_state_checks(config, environ, home, progress)]
    pid = holder(lock_path)
    lock = None
    if pid is None:
        try:
            lock = PidLock(lock_path).acquire()
        except PidLockHeld:
            pid = holder(lock_path)
    if lock is None:
        shown = pid if pid is not None and pid > 0 else "?"
        return [*checks, _fail("pid_lock", GATEWAY_RUNNING.format(pid=shown), lock_path),
                *_skipped(OFFLINE_CHECKS[3:], "gateway is running")]
    try:
        checks.append(_ok("pid_lock", "free; held by selfcheck for its run", lock_path))
        checks.extend(_state_checks(config, environ, home, progress))
    finally:
        lock.release()
    return checks


def _state_checks(config: Config, environ: Mapping[str, str], home: Path,
                  progress: Progress | None) -> list[SelfcheckCheck]:
    store = config.store()
    if isinstance(store, PostgresStore):
        return _server_state_checks(config, store, environ, home, progress)
    path = config.state_path
    if not path.exists():
        return [_fail("db_integrity", f"state database {path} does not exist", path),
                *_skipped(OFFLINE_CHECKS[4:], "no state database")]
    try:
        conn = connect(path, readonly=True)
        problems = integrity_problems(conn)
    except sqlite3.Error as exc:
        return [_fail("db_integrity", f"cannot read {path}: {exc}", path),
                *_skipped(OFFLINE_CHECKS[4:], "state database not readable")]
    try:
        if problems != ["ok"]:
            return [_fail("db_integrity", "; ".join(problems[:5]), path),
                    *_skipped(OFFLINE_CHECKS[4:], "state database is corrupt")]
        checks = [_ok("db_integrity", "ok", path)]
        stored = _guarded_stored(conn)
        stale = replay.rebuilt_at_next_start(conn, stored, PROJECTIONS)
        differences = replay.schema_differences(path, EVENTS_DDL, PROJECTIONS, skip=tuple(stale))
        checks.append(_fail("db_schema", "; ".join(differences), path) if differences
                      else _ok("db_schema", "; ".join(["matches the baseline", *stale.values()]), path))
        with read_snapshot(conn):
            bar = _Progress(progress, read_head(conn))
            checks.append(_guarded("queue_terminal_freshness", lambda: freshness_check(conn, config)))
            checks.append(_guarded("event_log_chain", lambda: chain_check(conn, bar.chain)))
            checks.append(_guarded("projection_replay", lambda: replay_check(path, bar.replay)))
            vault_built = vault_projection.PROJECTION.name not in stale
            checks.append(_guarded("vault_agreement", lambda: vault_check(conn, config, environ, home, vault_built)))
        return checks
    finally:
        conn.close()


def _server_state_checks(config: Config, store: PostgresStore, environ: Mapping[str, str], home: Path,
                         progress: Progress | None) -> list[SelfcheckCheck]:
    """§5's state checks on a PostgreSQL store: the server keeps its own pages (``db_integrity``
    is that the log can be read there); the schema, the chain, the replay (in a private schema,
    rolled back), freshness and the vault as on SQLite."""
    try:
        conn = store.reader()
        head = read_head(conn)
    except (*store.errors, PostgresUnavailable) as exc:
        return [_fail("db_integrity", f"cannot read {store.location}: {exc}"),
                *_skipped(OFFLINE_CHECKS[4:], "state database not readable")]
    try:
        checks = [_ok("db_integrity", f"event log head {head} on {store.location} (pages are the server's)")]
        stored = _guarded_stored(conn)
        stale = {**replay.stale_versions(stored, PROJECTIONS),
                 **{p.name: f"{p.name}: not stored yet, built at the next start ({p.version})"
                    for p in PROJECTIONS if p.name not in stored}}
        work = store.work_connection()
        try:
            differences = replay_postgres.schema_differences(work, EVENTS_DDL, PROJECTIONS, skip=tuple(stale))
        finally:
            work.close()
        checks.append(_fail("db_schema", "; ".join(differences)) if differences
                      else _ok("db_schema", "; ".join(["matches the baseline", *stale.values()])))
        with read_snapshot(conn):
            bar = _Progress(progress, read_head(conn))
            checks.append(_guarded("queue_terminal_freshness", lambda: freshness_check(conn, config)))
            checks.append(_guarded("event_log_chain", lambda: chain_check(conn, bar.chain)))
            checks.append(_guarded("projection_replay", lambda: _server_replay_check(store, bar.replay)))
            vault_built = vault_projection.PROJECTION.name not in stale
            checks.append(_guarded("vault_agreement", lambda: vault_check(conn, config, environ, home, vault_built)))
        return checks
    finally:
        conn.close()


def _server_replay_check(store: PostgresStore, progress: Progress | None = None) -> SelfcheckCheck:
    work = store.work_connection()
    try:
        outcome = replay_postgres.replay_and_compare(work, PROJECTIONS, progress)
    finally:
        work.close()
    return (_ok if outcome.ok else _fail)("projection_replay", outcome.detail)


def _guarded_stored(conn: sqlite3.Connection) -> dict[str, replay.StoredProjection]:
    try:
        return replay.stored_projections(conn)
    except Exception as exc:
        if not is_database_error(exc):
            raise
        return {}  # no projections table: db_schema lists it as missing
