"""``ductile job ...``: inspect jobs from the state DB (read-only; works while the gateway runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import App, Parameter

from ductile.cli.common import read_state, resolve
from ductile.cli.output import emit_json, fail, heading, print_table

if TYPE_CHECKING:
    import aiosqlite

app = App(name="job", help="Jobs in the ledger: inspect, logs, list.")

ConfigOpt = Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")]
ConfigDirOpt = Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")]


@app.command
def inspect(job_id: str, *, config: ConfigOpt = None, config_dir: ConfigDirOpt = None, json: bool = False) -> int:
    """Show one job: record, transitions, attempts and lineage (result and stderr included).

    **Examples:**

        ductile job inspect 0192c2a4-5b1e-7c3d-9e8f-0a1b2c3d4e5f
        ductile job inspect 0192c2a4-5b1e-7c3d-9e8f-0a1b2c3d4e5f --json
    """
    from ductile.projections import job_queries as q

    cfg = resolve(config, config_dir)

    async def load(conn: aiosqlite.Connection) -> dict[str, Any] | None:
        job = await q.get_job(conn, job_id, full=True)
        if job is None:
            return None
        stderr = await q.stderr_of(conn, job_id)
        if stderr:
            job["stderr"] = stderr
        return {
            "job": job,
            "transitions": await q.transitions(conn, job_id),
            "attempts": await q.attempts(conn, job_id),
            "lineage": await q.lineage(conn, job_id),
            "children": await q.children(conn, job_id),
            "dispatches": await q.dispatches(conn, job_id),
            "context": await q.context_chain(conn, job.get("event_context_id")),
        }

    report = read_state(cfg.store(), load)
    if report is None:
        raise fail(f"job not found: {job_id}", json=json)
    if json:
        emit_json(report)
        return 0
    _print_inspect(report)
    return 0


def _print_inspect(report: dict[str, Any]) -> None:
    import msgspec

    job = report["job"]
    heading("Job")
    for key in ("job_id", "plugin", "command", "status", "attempt", "max_attempts", "submitted_by", "created_at",
                "started_at", "completed_at", "next_retry_at", "last_error"):
        if job.get(key) is not None:
            print(f"  {key}: {job[key]}")
    if job.get("payload"):
        print(f"  payload: {msgspec.json.encode(job['payload']).decode()}")
    if job.get("result") is not None:
        print(f"  result: {msgspec.json.encode(job['result']).decode()}")
    if job.get("stderr"):
        print("  stderr: " + job["stderr"].rstrip().replace("\n", "\n          "))
    heading("Transitions", gap=True)
    print_table(["created", "from", "to", "reason"],
                [[t["created_at"], t["from_status"], t["to_status"], t["reason"]] for t in report["transitions"]])
    heading("Attempts", gap=True)
    print_table(["attempt", "started", "completed", "outcome", "exit", "duration_ms", "error"],
                [[a["attempt"], a.get("started_at"), a.get("completed_at"), a.get("outcome"), a.get("exit_code"),
                  a.get("duration_ms"), a.get("error")] for a in report["attempts"]])
    if report["context"]:
        heading("Context and baggage", gap=True)
        for record in report["context"]["chain"]:
            print(f"  {record['pipeline_name']}/{record['step_id']} claims={msgspec.json.encode(record['claims']).decode()}")
        print(f"  baggage: {msgspec.json.encode(report['context']['baggage']).decode()}")
    if report["dispatches"]:
        heading("Dispatches", gap=True)
        for d in report["dispatches"]:
            print(f"  {d.get('event_type', '-')} -> {d.get('pipeline')}/{d.get('step_id')} {d['outcome']} {d.get('job_id', '')}")
    if len(report["lineage"]) > 1 or report["children"]:
        heading("Lineage", gap=True)
        for node in report["lineage"]:
            print(f"  {node['job_id']} {node['plugin']}:{node['command']} {node['status']}")
        for child in report["children"]:
            print(f"  -> {child['job_id']} {child['plugin']}:{child['command']} {child['status']}")


@app.command
def logs(
    *,
    plugin: str | None = None,
    command: str | None = None,
    status: str | None = None,
    submitted_by: str | None = None,
    from_: Annotated[str | None, Parameter(name="--from", help="RFC3339 lower bound on completion.")] = None,
    to: Annotated[str | None, Parameter(help="RFC3339 upper bound on completion.")] = None,
    query: Annotated[str | None, Parameter(help="Substring of error, stderr or result.")] = None,
    limit: int = 50,
    include_result: bool = False,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    json: bool = False,
) -> int:
    """Terminal jobs from the ledger, newest first.

    **Examples:**

        ductile job logs --plugin echo
        ductile job logs --status failed --from 2026-01-01T00:00:00Z --json
    """
    from ductile.projections import job_queries as q

    if not 1 <= limit <= q.MAX_LIMIT:
        raise fail(f"--limit must be between 1 and {q.MAX_LIMIT}", json=json)
    cfg = resolve(config, config_dir)
    try:
        data = read_state(cfg.store(), lambda conn: q.job_logs(
            conn, plugin=plugin, command=command, status=status, submitted_by=submitted_by,
            from_=from_, to=to, query=query, limit=limit, include_result=include_result))
    except q.QueryError as exc:
        message = str(exc).replace("invalid from", "invalid --from").replace("invalid to", "invalid --to")
        raise fail(message, json=json) from None
    if json:
        emit_json({"total": data["total"], "logs": data["logs"]})
        return 0
    heading(f"Job Logs (total={data['total']})")
    for e in data["logs"]:
        print(f"- {e['completed_at']} {e['status']} {e['plugin']}:{e['command']} job={e['job_id']} "
              f"attempt={e['attempt']} submitted_by={e['submitted_by']}")
    return 0


@app.command(name="list")
def list_(
    *,
    plugin: str | None = None,
    command: str | None = None,
    status: str | None = None,
    submitted_by: str | None = None,
    limit: int = 50,
    config: ConfigOpt = None,
    config_dir: ConfigDirOpt = None,
    json: bool = False,
) -> int:
    """Jobs in the queue (outstanding, and terminal ones inside retention), newest first.

    **Examples:**

        ductile job list
        ductile job list --plugin echo --status failed --limit 10 --json
    """
    from ductile.projections import job_queries as q

    if not 1 <= limit <= q.MAX_LIMIT:
        raise fail(f"--limit must be between 1 and {q.MAX_LIMIT}", json=json)
    cfg = resolve(config, config_dir)
    try:
        data = read_state(cfg.store(), lambda conn: q.list_jobs(
            conn, plugin=plugin, command=command, status=status, submitted_by=submitted_by, limit=limit))
    except q.QueryError as exc:
        raise fail(str(exc), json=json) from None
    if json:
        emit_json(data)
        return 0
    print_table(["job_id", "plugin", "command", "status", "attempt", "submitted_by", "created"],
                [[j["job_id"], j["plugin"], j["command"], j["status"], j["attempt"], j["submitted_by"],
                  j["created_at"]] for j in data["jobs"]])
    return 0
