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


@app.command
def scheduler(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None, json: bool = False) -> int:
    """Outstanding scheduler jobs, from the read models (gateway running or not)."""
    from ductile.cli.common import open_readonly
    from ductile.projections.schedule_queries import active_polls

    cfg = resolve(config, config_dir)
    polls = active_polls(open_readonly(cfg.state_path))
    if json:
        emit_json({"service_name": cfg.service.name, "count": len(polls), "active_polls": polls})
        return 0
    print_table(["job_id", "plugin", "command", "schedule", "status", "attempt", "created"],
                [[p["job_id"], p["plugin"], p["command"], p["schedule_id"], p["status"], p["attempt"], p["created_at"]]
                 for p in polls])
    return 0


@app.command
def breaker(
    plugin: str,
    *,
    command: str = "poll",
    limit: int = 20,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    json: bool = False,
) -> int:
    """Circuit breaker state of PLUGIN's COMMAND and its transitions, newest first."""
    from ductile.cli.common import open_readonly
    from ductile.projections.schedule_queries import breaker as breaker_report

    if limit <= 0:
        raise fail("--limit must be > 0", json=json)
    cfg = resolve(config, config_dir)
    if plugin not in cfg.plugins:
        raise fail(f"plugin not found: {plugin}", json=json)
    report = breaker_report(open_readonly(cfg.state_path), plugin, command, limit)
    if json:
        emit_json(report)
        return 0
    print(f"{plugin} ({command}): {report.get('state', 'closed')}, failures={report['failure_count']}"
          + (f", opened_at={report['opened_at']}" if report.get("opened_at") else ""))
    print_table(["created", "from", "to", "failures", "reason", "job"],
                [[t["created_at"], t.get("from_state"), t["to_state"], t["failure_count"], t["reason"], t.get("job_id")]
                 for t in report["transitions"]])
    return 0


@app.command
def reset(
    plugin: str,
    *,
    command: str = "poll",
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    api_url: str | None = None,
    api_key: str | None = None,
    json: bool = False,
) -> int:
    """Close PLUGIN's circuit breaker (through the gateway when it runs, else in the log directly)."""
    from ductile.system.pidlock import holder, pid_path

    cfg = resolve(config, config_dir)
    if plugin not in cfg.plugins:
        raise fail(f"plugin not found: {plugin}", json=json)
    if holder(pid_path(cfg.state_path)) is not None:
        from ductile.cli.client import GatewayClient
        from ductile.cli.output import CliFailure

        try:
            GatewayClient(api_url or f"http://{cfg.api.listen}", api_key).request(
                "POST", f"/system/breaker/{plugin}/reset", {"command": command}
            )
        except CliFailure as exc:
            raise fail(exc.message, json=json) from None
    else:
        from ductile.commands import schedule_units
        from ductile.events.log import EventLog
        from ductile.projections.registry import default_runner
        from ductile.system.pidlock import PidLock, PidLockHeld

        try:
            lock = PidLock(pid_path(cfg.state_path)).acquire()  # the gateway must not start meanwhile
        except PidLockHeld as exc:
            raise fail(str(exc), json=json) from None
        try:
            log = EventLog(cfg.state_path, cfg.service.durability, default_runner()).open_sync()
            try:
                log.submit_sync(lambda tx: schedule_units.reset_breaker(tx, plugin, command))
            finally:
                log.close()
        finally:
            lock.release()
    if json:
        emit_json({"plugin": plugin, "command": command, "state": "closed"})
    else:
        print(f"Reset circuit breaker for {plugin} ({command})")
    return 0
