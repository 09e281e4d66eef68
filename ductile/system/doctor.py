"""The doctor's online findings (operations.md §6): loaded plugins, durability, the state DB, disk
space; beside them the API reports ``runtime/config_check.py``'s findings."""

from __future__ import annotations

import os
import shutil
import sqlite3
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ductile.config.model import Config
from ductile.events.log import fetch_head

if TYPE_CHECKING:
    import aiosqlite

    from ductile.runtime.catalog import Catalog

LOW_DISK_BYTES = 1 << 30


class DoctorCheck(msgspec.Struct, kw_only=True):
    """One finding as ``/system/doctor`` answers it; ``_check`` builds its keys."""

    name: str
    ok: bool
    severity: Literal["error", "warning"] | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    field: str | UnsetType = UNSET


def _check(name: str, ok: bool, severity: str | None = None, detail: str | None = None,
           field: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "ok": ok}
    for key, value in (("severity", severity), ("detail", detail), ("field", field)):
        if value is not None:
            out[key] = value
    return out


async def doctor_checks(config: Config, catalog: Catalog, conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    # The configuration's findings (load warnings, plugin problems, integrity) come from the
    # config check report, which the API puts first; these are the checks only a running gateway has.
    checks: list[dict[str, Any]] = []
    checks.append(_check("plugins", True, detail=f"{len(catalog.plugins)} plugin(s) loaded"))
    for name, loaded in sorted(catalog.plugins.items()):
        if not os.access(loaded.entrypoint, os.X_OK):
            checks.append(_check("plugins", False, "error", f'plugin "{name}": entrypoint is not executable',
                                 f"plugins.{name}"))
    if config.service.durability == "normal":
        checks.append(_check("durability", False, "warning",
                             "service.durability is normal: a power loss may drop the last commits",
                             "service.durability"))
    try:
        head = await fetch_head(conn)
        checks.append(_check("state_db", True, detail=f"event log head {head}"))
    except sqlite3.Error as exc:
        checks.append(_check("state_db", False, "error", f"state DB not readable: {exc}", "state.path"))
    try:
        free = shutil.disk_usage(config.state_path.parent).free
        low = free < LOW_DISK_BYTES
        checks.append(_check("disk_space", not low, "warning" if low else None,
                             f"{free // (1 << 20)} MiB free in {config.state_path.parent}"))
    except OSError as exc:
        checks.append(_check("disk_space", False, "warning", f"cannot read free space: {exc}"))
    checks.append(_check("gateway", True, detail=f"running (pid {os.getpid()})"))
    return checks
