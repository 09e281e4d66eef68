"""Shared CLI plumbing: config resolution and opening the state DB read-only."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ductile.cli.output import CliFailure

if TYPE_CHECKING:
    import aiosqlite

    from ductile.events.store import EventStore

T = TypeVar("T")


def resolve(config: str | None, config_dir: str | None):  # -> Config
    """Load the config (discovery order of config.md §1); failures are ``config error: ...``."""
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError
    from ductile.config.loader import load_config

    try:
        return load_config(find_config(config, config_dir))
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None


def resolve_verified(config: str | None, config_dir: str | None):  # -> Config
    """``resolve`` plus the integrity rules every full load runs (config.md §6.3): a tampered
    high-security file or an unreadable ``.checksums`` is ``config error: tampering detected: ...``.
    For the commands the spec names as full loads (`config show/get`, `plugin lock`,
    `config token create`); commands that only need the API address keep ``resolve``."""
    from ductile.config.errors import ConfigError
    from ductile.config.integrity import refuse_tampering

    cfg = resolve(config, config_dir)
    try:
        refuse_tampering(cfg.files, cfg.source.config_dir)
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None
    return cfg


def find_source(config: str | None, config_dir: str | None):  # -> ConfigSource
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError

    try:
        return find_config(config, config_dir)
    except ConfigError as exc:
        raise CliFailure(str(exc), prefix="config error") from None


def read_state(store: EventStore, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
    """``fn`` run on the state DB opened read-only: works while the gateway runs, never modifies
    anything. The query functions are the API's own (async, on the store's async reader)."""
    import asyncio

    if not store.exists():
        raise CliFailure(f"state database {store.location} does not exist (has the gateway ever started?)")

    async def run() -> T:
        try:
            conn = await store.connect_async()
        except store.errors as exc:
            raise CliFailure(f"cannot read state database {store.location}: {exc}") from None
        try:
            try:
                await conn.execute_fetchall("SELECT 1 FROM job_queue LIMIT 1")
            except store.errors as exc:
                raise CliFailure(f"cannot read state database {store.location}: {exc}") from None
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def parse_timeout(text: str, flag: str = "--timeout") -> tuple[float, str]:
    """A duration flag (``60s``, ``2m``, ``1h30m``; a bare number means seconds) -> (seconds, shown).

    The grammar is the one of config and schedules; only the bare-number-as-seconds convention of
    command-line flags is added here. A malformed value is a command-line error: exit 2.
    """
    from ductile.formats.durations import DurationError, parse_duration_seconds

    raw = text.strip()
    shown = raw
    try:
        seconds = float(raw)
        shown = f"{raw}s"
    except ValueError:
        try:
            seconds = parse_duration_seconds(raw)
        except DurationError:
            raise CliFailure(f'invalid {flag} "{text}" (use a duration such as 30s or 5m)', code=2) from None
    if seconds <= 0 or seconds != seconds or seconds == float("inf"):
        raise CliFailure(f'invalid {flag} "{text}": must be > 0', code=2)
    return seconds, shown


def read_state_sync(store: EventStore, fn: Callable[[sqlite3.Cursor], T]) -> T:
    """``fn`` (a projection's typed reader) on the state DB opened read-only, for the commands
    that need no async reader: works while the gateway runs, never modifies anything."""
    if not store.exists():
        raise CliFailure(f"state database {store.location} does not exist (has the gateway ever started?)")
    try:
        conn = store.reader()
    except store.errors as exc:
        raise CliFailure(f"cannot read state database {store.location}: {exc}") from None
    try:
        return fn(conn.cursor())
    except store.errors as exc:
        raise CliFailure(f"cannot read state database {store.location}: {exc}") from None
    finally:
        conn.close()
