"""``ductile system ...``: run and maintain the gateway."""

from __future__ import annotations

import sys
import time
from typing import Annotated

from cyclopts import App, Parameter

from ductile.cli.common import find_source, resolve
from ductile.cli.output import emit_json, fail, print_table

app = App(name="system", help="Run and maintain the gateway: start, rebuild.")

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]


@app.command
def start(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """Start the gateway in the foreground (JSON logs on stdout; SIGTERM/SIGINT stop it gracefully)."""
    from ductile.runtime.gateway import start as start_gateway

    return start_gateway(find_source(config, config_dir))


@app.command
def rebuild(
    *,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    projection: Annotated[list[str] | None, Parameter(help="Projection to rebuild (repeatable; default all).")] = None,
    json: bool = False,
) -> int:
    """Drop projections and rebuild them from the event log (the gateway must be stopped)."""
    from ductile.events.log import connect
    from ductile.projections.registry import default_runner
    from ductile.projections.runner import UnknownProjection
    from ductile.system.pidlock import PidLock, PidLockHeld, pid_path

    cfg = resolve(config, config_dir)
    runner = default_runner()
    try:
        for name in projection or []:
            runner.by_name(name)
    except UnknownProjection as exc:
        raise fail(str(exc), json=json) from None
    if not cfg.state_path.exists():
        raise fail(f"state database {cfg.state_path} does not exist", json=json)
    try:
        lock = PidLock(pid_path(cfg.state_path)).acquire()
    except PidLockHeld as exc:
        raise fail(str(exc), json=json) from None
    progress = None
    if sys.stderr.isatty() and not json:
        def progress(done: int, total: int) -> None:
            sys.stderr.write(f"\rrebuilding: {done}/{total} events")
            sys.stderr.flush()
    try:
        conn = connect(cfg.state_path, cfg.service.durability)
        started = time.perf_counter()
        reports = runner.rebuild(conn, projection or None, progress)
        position = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
        conn.close()
    finally:
        lock.release()
    if progress is not None:
        sys.stderr.write("\n")
    seconds = round(time.perf_counter() - started, 3)
    if json:
        emit_json({"position": position, "seconds": seconds, "projections": [
            {"name": r.name, "version": r.version, "events_applied": r.events_applied, "seconds": round(r.seconds, 3)}
            for r in reports]})
        return 0
    print_table(["projection", "version", "events", "seconds"],
                [[r.name, r.version, r.events_applied, f"{r.seconds:.3f}"] for r in reports])
    print(f"rebuilt {len(reports)} projection(s) to position {position} in {seconds}s")
    return 0
