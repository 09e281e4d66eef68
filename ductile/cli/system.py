"""``ductile system ...``: run and maintain the gateway."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import App, Parameter

from ductile.cli.common import find_source, resolve
from ductile.cli.output import debugging, emit_json, fail, heading, print_check, print_table
from ductile.cli.progress import progress_lines

if TYPE_CHECKING:
    from ductile.config.loader import Config
    from ductile.events.store import EventStore

app = App(name="system", help="Run and maintain the gateway: start, stop, status, reload, rebuild, skills.")
# Lazy verbs keep their help here, examples included, so listing them does not import their modules.
app.command("ductile.cli.skills:skills", name="skills", help=(
    "Print the LLM operator skill manifest: CLI commands, plugin commands and pipelines.\n\n"
    "**Examples:**\n\n"
    "    ductile system skills\n"
    "    ductile system skills --config ./my-gateway --json\n"))
app.command("ductile.cli.config_check:doctor", name="doctor", help=(
    "Diagnose the configuration, plugins and vault, gateway running or not (the config check report).\n\n"
    "**Examples:**\n\n"
    "    ductile system doctor\n"
    "    ductile system doctor --fail-on-warnings --json\n"))
app.command("ductile.cli.plugin_facts:plugin_facts", name="plugin-facts", help=(
    "A plugin's appended facts (fact_outputs), newest first.\n\n"
    "**Examples:**\n\n"
    "    ductile system plugin-facts echo\n"
    "    ductile system plugin-facts echo --fact-type seen --limit 5 --json\n"))
app.command("ductile.cli.backup:backup", name="backup", help=(
    "Snapshot the state DB (and config, plugins, env files by --scope) into one gzip tar, gateway running or not."
    "\n\n**Examples:**\n\n"
    "    ductile system backup --to backup.tar.gz\n"
    "    ductile system backup --to backup.tar.gz --scope all --json\n"))
app.command("ductile.cli.backup:restore", name="restore", help=(
    "Verify a backup archive whole, restore it (gateway stopped), then run the selfcheck.\n\n"
    "**Examples:**\n\n"
    "    ductile system restore --from backup.tar.gz --config-dir ./my-gateway\n"
    "    ductile system restore --from backup.tar.gz --config-dir ./gw --force\n"))

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]


@app.command
def start(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None) -> int:
    """Start the gateway in the foreground (JSON logs on stdout; SIGTERM/SIGINT stop it gracefully).

    **Examples:**

        ductile system start --config ./my-gateway
        ductile system start --config examples/quickstart >> gateway.log &
    """
    from ductile.daemon import start as start_gateway

    return start_gateway(find_source(config, config_dir))


@app.command
def rebuild(
    *,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    projection: Annotated[list[str] | None, Parameter(help="Projection to rebuild (repeatable; default all).")] = None,
    json: bool = False,
) -> int:
    """Drop projections and rebuild them from the event log (the gateway must be stopped).

    **Examples:**

        ductile system rebuild
        ductile system rebuild --projection queue --json
    """
    from ductile.projections import fold_worker

    cfg = resolve(config, config_dir)
    # The fold worker first (when this rebuild will use one): its start and imports run on the
    # other core while this process imports the projections and opens the log.
    fold_worker.prestart(cfg.store().file, projection)
    try:
        return _rebuild(cfg, projection, json)
    finally:
        fold_worker.discard_prestarted()


def _rebuild(cfg: Config, projection: list[str] | None, json: bool) -> int:
    from ductile.events.record import read_head
    from ductile.events.schema import UnknownSchema
    from ductile.projections.fold_worker import FoldWorkerFailed
    from ductile.projections.registry import default_runner
    from ductile.projections.runner import UnknownProjection
    from ductile.system.pidlock import PidLock, PidLockHeld, pid_path

    runner = default_runner()
    try:
        for name in projection or []:
            runner.by_name(name)
    except UnknownProjection as exc:
        raise fail(str(exc), json=json) from None
    store = cfg.store()
    if not store.exists():
        raise fail(f"state database {store.location} does not exist", json=json)
    try:
        lock = PidLock(pid_path(cfg.state_path)).acquire()
    except PidLockHeld as exc:
        raise fail(str(exc), json=json) from None
    bar = progress_lines("rebuilding", json=json)
    try:
        try:
            conn = store.open_writer(cfg.service.durability)
        except UnknownSchema as exc:  # an emptied file, someone else's database
            raise fail(str(exc), json=json) from None
        started = time.perf_counter()
        try:
            reports = runner.rebuild(conn, projection or None, bar)
        except FoldWorkerFailed as exc:  # its traceback is logged; the user gets its error
            conn.close()
            if debugging() and exc.detail:  # as for any fault: the worker's own traceback
                print(exc.detail, file=sys.stderr)
            raise fail(str(exc), json=json) from None
        position = read_head(conn)
        conn.close()
    finally:
        bar.close()
        lock.release()
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
def selfcheck(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None, json: bool = False) -> int:
    """Offline deploy gate (gateway stopped): DB integrity and schema, the event log's hash chain, a replay
    of every event into fresh projections, queue freshness and the vault's agreement with the log.

    **Examples:**

        ductile system selfcheck --config ./my-gateway
        ductile system selfcheck --json
    """
    import os

    from ductile.events.timefmt import now_ns, rfc3339
    from ductile.system.selfcheck import CheckStatus, offline_checks

    bar = progress_lines("selfcheck", json=json)
    try:
        checks = offline_checks(config, config_dir, os.environ, Path.home(), bar)
    finally:
        bar.close()
    healthy = all(c.ok for c in checks)
    if json:
        emit_json({"healthy": healthy, "captured_at": rfc3339(now_ns()), "checks": checks})
    else:
        print(f"Selfcheck: {'PASS' if healthy else 'FAIL'}")
        words = {CheckStatus.OK: "OK", CheckStatus.FAIL: "FAIL", CheckStatus.SKIPPED: "SKIP"}
        for check in checks:
            print_check(check.name, words[check.status], detail=check.detail or None)
    return 0 if healthy else 1


@app.command
def scheduler(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None, json: bool = False) -> int:
    """Outstanding scheduler jobs, from the read models (gateway running or not).

    **Examples:**

        ductile system scheduler
        ductile system scheduler --json
    """
    from ductile.cli.common import read_state
    from ductile.projections.schedule_queries import active_polls

    cfg = resolve(config, config_dir)
    polls = read_state(cfg.store(), active_polls)
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
    """Circuit breaker state of PLUGIN's COMMAND and its transitions, newest first.

    **Examples:**

        ductile system breaker echo
        ductile system breaker echo --command poll --json
    """
    from ductile.cli.common import read_state
    from ductile.projections.schedule_queries import breaker as breaker_report

    if limit <= 0:
        raise fail("--limit must be > 0", json=json)
    cfg = resolve(config, config_dir)
    if plugin not in cfg.plugins:
        raise fail(f"plugin not found: {plugin}", json=json)
    report = read_state(cfg.store(), lambda conn: breaker_report(conn, plugin, command, limit))
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
    """Close PLUGIN's circuit breaker (through the gateway when it runs, else in the log directly).

    **Examples:**

        ductile system reset echo
        ductile system reset echo --command poll --json
    """
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
        from ductile.app import schedules
        from ductile.events.log import EventLog
        from ductile.events.schema import UnknownSchema
        from ductile.projections.registry import default_runner
        from ductile.system.pidlock import PidLock, PidLockHeld

        try:
            lock = PidLock(pid_path(cfg.state_path)).acquire()  # the gateway must not start meanwhile
        except PidLockHeld as exc:
            raise fail(str(exc), json=json) from None
        try:
            try:
                log = EventLog(cfg.store(), cfg.service.durability, default_runner()).open_sync()
            except UnknownSchema as exc:
                raise fail(str(exc), json=json) from None
            try:
                log.submit_sync(lambda tx: schedules.reset_breaker(tx, plugin, command))
            finally:
                log.close()
        finally:
            lock.release()
    if json:
        emit_json({"plugin": plugin, "command": command, "state": "closed"})
    else:
        print(f"Reset circuit breaker for {plugin} ({command})")
    return 0


SKIPPED = "skipped: "
RELOAD_NO_OUTCOME = "reload signal sent to pid {pid}; no outcome within {timeout}"  # operations.md §4
TimeoutOpt = Annotated[str, Parameter(help="How long to wait (a duration: 30s, 2m; a bare number is seconds).")]


@app.command
def stop(
    *,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    timeout: TimeoutOpt = "60s",
    json: bool = False,
) -> int:
    """Stop the gateway: SIGTERM to the PID holding the lock, then wait until the lock is released.

    **Examples:**

        ductile system stop
        ductile system stop --timeout 2m --json
    """
    import os
    import signal

    from ductile.cli.common import parse_timeout
    from ductile.system.pidlock import holder, pid_path

    seconds, shown = parse_timeout(timeout)
    cfg = resolve(config, config_dir)
    lock_path = pid_path(cfg.state_path)
    pid = holder(lock_path)
    if pid is None:
        if json:
            emit_json({"status": "not_running"})
        else:
            print("gateway is not running")
        return 0
    if pid <= 0:
        raise fail(f"the PID lock {lock_path} is held but names no process; stop the gateway by other means",
                   json=json)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited meanwhile; the lock tells
    except PermissionError:
        raise fail(f"cannot signal the gateway (pid {pid}): permission denied", json=json) from None
    deadline = time.monotonic() + seconds
    while holder(lock_path) is not None:
        if time.monotonic() >= deadline:
            message = f"gateway still running after {shown} (pid {pid})"
            raise fail(message, json=json, document={"status": "timeout", "pid": pid, "error": message})
        time.sleep(0.05)
    if json:
        emit_json({"status": "stopped", "pid": pid})
    else:
        print(f"gateway stopped (pid {pid})")
    return 0


@app.command
def reload(
    *,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    api_url: Annotated[str | None, Parameter(help="Reload through POST /system/reload at this URL.")] = None,
    api_key: Annotated[str | None, Parameter(help="API token (default: $DUCTILE_API_KEY).")] = None,
    timeout: TimeoutOpt = "30s",
    json: bool = False,
) -> int:
    """Reload the configuration: POST /system/reload with --api-url, else SIGHUP to the PID holding the lock.

    **Examples:**

        ductile system reload
        ductile system reload --api-url http://127.0.0.1:8080 --json
    """
    from ductile.cli.common import parse_timeout

    seconds, shown = parse_timeout(timeout)
    if api_url:
        return _reload_over_api(api_url, api_key, seconds, json)
    import os
    import signal

    from ductile.system.pidlock import holder, pid_path

    cfg = resolve(config, config_dir)
    pid = holder(pid_path(cfg.state_path))
    if pid is None:
        raise fail("gateway is not running", json=json)
    if pid <= 0:
        raise fail(f"the PID lock {pid_path(cfg.state_path)} is held but names no process", json=json)
    from ductile.events.record import read_head

    store = cfg.store()
    conn = store.reader()
    try:
        head = read_head(conn)  # the outcome is the first one recorded after this position
    finally:
        conn.close()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise fail("gateway is not running", json=json) from None
    except PermissionError:
        raise fail(f"cannot signal the gateway (pid {pid}): permission denied", json=json) from None
    return _await_reload_outcome(store, head, pid, seconds, shown, json)


def _await_reload_outcome(store: EventStore, head: int, pid: int, seconds: float, shown: str, json: bool) -> int:
    """Wait for the reload's outcome in the event log: the first ``ConfigReloaded`` or
    ``ConfigReloadRejected`` after ``head`` (the log's head before the signal)."""
    from ductile.app.reload import RELOADED_MESSAGE, ReloadStatus
    from ductile.events.log import iter_rows
    from ductile.events.timefmt import rfc3339
    from ductile.events.types import ConfigReloaded, ConfigReloadRejected

    deadline = time.monotonic() + seconds
    conn = store.reader()
    try:
        while True:
            for rec in iter_rows(conn, head):
                head = rec.position
                if isinstance(rec.event, ConfigReloaded):
                    at = rfc3339(rec.event.at) or ""
                    if json:
                        emit_json({"status": ReloadStatus.OK, "reloaded_at": at, "message": RELOADED_MESSAGE})
                    else:
                        print(f"Reloaded at {at}")
                    return 0
                if isinstance(rec.event, ConfigReloadRejected):
                    error = rec.event.error
                    raise fail(error, json=json, document={"status": ReloadStatus.REJECTED, "error": error})
            if time.monotonic() >= deadline:
                message = RELOAD_NO_OUTCOME.format(pid=pid, timeout=shown)
                raise fail(message, json=json, document={"status": "timeout", "pid": pid, "error": message})
            time.sleep(0.05)
    finally:
        conn.close()


def _reload_over_api(api_url: str, api_key: str | None, seconds: float, json: bool) -> int:
    from ductile.app.reload import ReloadStatus
    from ductile.cli.client import GatewayClient, GatewayHttpError
    from ductile.cli.output import CliFailure

    try:
        body = GatewayClient(api_url, api_key, timeout=seconds).request("POST", "/system/reload")
    except GatewayHttpError as exc:
        if exc.status == 409:
            error = exc.error if exc.error.startswith("config reload rejected") else f"config reload rejected: {exc.error}"
            raise fail(error, json=json, document={"status": ReloadStatus.REJECTED, "error": error}) from None
        raise fail(exc.message, json=json) from None
    except CliFailure as exc:
        raise fail(exc.message, json=json) from None
    if json:
        emit_json(body)
        return 0
    print(f"Reloaded at {body.get('reloaded_at', '?')}")
    return 0


@app.command
def status(*, config: ConfigOpt = None, config_dir: ConfigDirOpt = None, json: bool = False) -> int:
    """Is the gateway running and healthy: config, state DB, PID lock and GET /healthz.

    **Examples:**

        ductile system status
        ductile system status --json
    """
    report = status_report(config, config_dir)
    if json:
        emit_json(report)
    else:
        heading(f"System Status: {'HEALTHY' if report['healthy'] else 'DEGRADED'}")
        for check in report["checks"]:
            detail = str(check.get("detail", ""))
            skipped = detail.startswith(SKIPPED)
            word = "SKIP" if skipped else ("OK" if check["ok"] else "FAIL")
            print_check(check["name"], word, path=check.get("path"), detail=detail.removeprefix(SKIPPED) if detail else None)
    return 0 if report["healthy"] else 1


def status_report(config: str | None, config_dir: str | None) -> dict[str, Any]:
    """``{healthy, checks:[{name, ok, path?, detail?, active_pid?}], health?}`` (operations.md §4).

    A check that cannot run because an earlier one failed is not ok, with the detail
    ``skipped: <reason>`` (printed as SKIP).
    """
    from ductile.config.discovery import find_config
    from ductile.config.errors import ConfigError
    from ductile.config.loader import load_config
    from ductile.system.pidlock import holder, pid_path

    checks: list[dict[str, Any]] = []
    report: dict[str, Any] = {"healthy": False, "checks": checks}

    def skip(*names: str, why: str) -> dict[str, Any]:
        checks.extend({"name": n, "ok": False, "detail": f"{SKIPPED}{why}"} for n in names)
        return report

    try:
        source = find_config(config, config_dir)
    except ConfigError as exc:
        checks.append({"name": "config_discovery", "ok": False, "detail": str(exc)})
        return skip("config_load", "state_db", "pid_lock", "health", why="no config")
    checks.append({"name": "config_discovery", "ok": True, "path": str(source.root_file),
                   "detail": f"source={source.source}"})
    try:
        cfg = load_config(source)
    except ConfigError as exc:
        checks.append({"name": "config_load", "ok": False, "path": str(source.root_file), "detail": str(exc)})
        return skip("state_db", "pid_lock", "health", why="config did not load")
    checks.append({"name": "config_load", "ok": True, "path": str(source.root_file)})
    checks.append(_state_db_check(cfg.store()))
    lock_path = pid_path(cfg.state_path)
    pid = holder(lock_path)
    if pid is None:
        checks.append({"name": "pid_lock", "ok": False, "path": str(lock_path), "detail": "gateway is not running"})
        return skip("health", why="gateway is not running")
    lock_check: dict[str, Any] = {"name": "pid_lock", "ok": True, "path": str(lock_path)}
    if pid > 0:
        lock_check["active_pid"] = pid
        lock_check["detail"] = f"held by pid {pid}"
    else:
        lock_check["detail"] = "held (pid not recorded)"
    checks.append(lock_check)
    health_check, health = _health_check(cfg)
    checks.append(health_check)
    if health is not None:
        report["health"] = health
    report["healthy"] = all(c["ok"] for c in checks)
    return report


def _state_db_check(store: EventStore) -> dict[str, Any]:
    from ductile.events.record import read_head
    from ductile.events.store import read_with

    check: dict[str, Any] = {"name": "state_db", "ok": False, "path": store.location}
    if not store.exists():
        check["detail"] = "does not exist (has the gateway ever started?)"
        return check
    try:
        head = read_with(store, read_head)
    except store.errors as exc:
        check["detail"] = f"cannot read: {exc}"
        return check
    check.update(ok=True, detail=f"event log position {head}")
    return check


def _health_check(cfg: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``GET /healthz`` on the management socket when it exists, else on ``api.listen``."""
    import stat

    import httpx

    from ductile.cli.client import listen_url

    socket_path = cfg.api.management_socket
    try:
        use_socket = socket_path is not None and stat.S_ISSOCK(socket_path.stat().st_mode)
    except OSError:
        use_socket = False
    if use_socket:
        where = f"unix://{socket_path}"
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://gateway",
                              timeout=5.0)
    elif cfg.api.enabled:
        where = listen_url(cfg.api.listen)
        client = httpx.Client(base_url=where, timeout=5.0)
    else:
        return {"name": "health", "ok": False, "detail": "api.enabled is false and there is no management socket"}, None
    check: dict[str, Any] = {"name": "health", "ok": False, "path": where + "/healthz"}
    try:
        with client:
            resp = client.get("/healthz")
    except httpx.HTTPError as exc:
        check["detail"] = f"cannot reach the gateway: {exc}"
        return check, None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        error = body.get("error") if isinstance(body, dict) else None
        check["detail"] = f"HTTP {resp.status_code}" + (f": {error}" if error else "")
        return check, body if isinstance(body, dict) else None
    check["ok"] = True
    check["detail"] = (f"posture={body.get('posture', '?')} uptime={body.get('uptime_seconds', '?')}s "
                       f"queue_depth={body.get('queue_depth', '?')}")
    cluster = body.get("cluster")
    if isinstance(cluster, dict):  # one node of several on a PostgreSQL store
        check["detail"] += (f" node={cluster.get('node')} scheduler_node={cluster.get('scheduler_node') or 'none'}"
                            f" nodes={len(cluster.get('nodes') or [])}")
    return check, body


@app.command(name="vault-audit")
def vault_audit(
    *,
    principal: Annotated[str | None, Parameter(help="Rows about this principal and the secrets ever granted to it.")] = None,
    secret: Annotated[str | None, Parameter(help="Rows about this secret.")] = None,
    limit: Annotated[int, Parameter(help="Rows to show, newest first (default 50).")] = 50,
    json: bool = False,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """The vault audit trail (vault.md §12), newest first; works with the gateway running.

    **Examples:**

        ductile system vault-audit
        ductile system vault-audit --secret api-token-ci --limit 10 --json
    """
    from ductile.cli.vault import vault_audit as show

    show(principal=principal, secret=secret, limit=limit, json=json, config=config, config_dir=config_dir)


WATCH_NEEDS_TTY = "system watch needs an interactive terminal"


@app.command
def watch(
    *,
    api_url: Annotated[str | None, Parameter(help="Gateway URL (default: http://<api.listen> from the config).")] = None,
    api_key: Annotated[str | None, Parameter(help="API token (default: $DUCTILE_API_KEY).")] = None,
) -> int:
    """Full-screen dashboard of a running gateway: health, pipelines, schedules, running and recent jobs, open
    breakers, live events (q quits).

    **Examples:**

        ductile system watch
        ductile system watch --api-url http://127.0.0.1:8080
    """
    import sys

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise fail(WATCH_NEEDS_TTY, code=2)
    from ductile.cli.client import GatewayClient, default_api_url, require_local_host

    client = GatewayClient(api_url or default_api_url(), api_key)  # resolves $DUCTILE_API_KEY
    if client.api_key:
        require_local_host(client.api_url)
    # Lazily: textual costs ~100 ms to import, which `ductile version` must never pay.
    from ductile.tui.app import WatchApp
    from ductile.tui.feed import HttpFeed

    app_ = WatchApp(HttpFeed(client.api_url, client.api_key))
    app_.run()
    return 0
