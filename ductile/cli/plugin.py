"""``ductile plugin ...``: list, show and run plugins through the running gateway."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
from cyclopts import App, Parameter

from ductile.cli.client import GatewayClient, default_api_url
from ductile.cli.output import CliFailure, emit_json, fail, heading, print_table
from ductile.vocabulary import TERMINAL, JobStatus

app = App(name="plugin", help="Plugins on the running gateway: list, show, run; attest them: lock.")

ApiUrl = Annotated[str | None, Parameter(help="Gateway URL (default: http://<api.listen> from the config).")]
ApiKey = Annotated[str | None, Parameter(help="API token (default: $DUCTILE_API_KEY).")]


def _client(api_url: str | None, api_key: str | None) -> GatewayClient:
    return GatewayClient(api_url or default_api_url(), api_key)


@app.command(name="list")
def list_(*, api_url: ApiUrl = None, api_key: ApiKey = None, json: bool = False) -> int:
    """List the enabled plugins (``GET /plugins``).

    **Examples:**

        ductile plugin list
        ductile plugin list --api-url http://127.0.0.1:8080 --json
    """
    try:
        data = _client(api_url, api_key).request("GET", "/plugins")
    except CliFailure as exc:
        raise fail(exc.message, json=json) from None
    if json:
        emit_json(data)
        return 0
    print_table(["name", "version", "commands"],
                [[p["name"], p.get("version"), ",".join(p.get("commands", []))] for p in data["plugins"]])
    return 0


@app.command
def show(name: str, *, api_url: ApiUrl = None, api_key: ApiKey = None, json: bool = False) -> int:
    """Show plugin NAME: version, protocol, description and commands (``GET /plugin/NAME``).

    **Examples:**

        ductile plugin show echo
        ductile plugin show echo --json
    """
    from urllib.parse import quote

    from ductile.cli.client import GatewayHttpError

    try:
        data = _client(api_url, api_key).request("GET", f"/plugin/{quote(name, safe='')}")
    except GatewayHttpError as exc:
        # "plugin not found" is the route's answer; a bare "not found" means the route is missing.
        message = "plugin not found" if exc.status == 404 and exc.error == "plugin not found" else exc.message
        raise fail(message, json=json) from None
    except CliFailure as exc:
        raise fail(exc.message, json=json) from None
    if json:
        emit_json(data)
        return 0
    version = data.get("version") or "-"
    heading(f"{data.get('name', name)} {version} (protocol {data.get('protocol', '?')})")
    if data.get("description"):
        print(data["description"])
    print()
    print_table(["command", "type", "description"],
                [[c.get("name"), c.get("type"), c.get("description")] for c in data.get("commands", [])])
    return 0


def _payload(payload: str | None, payload_file: str | None) -> dict[str, Any]:
    if payload is not None and payload_file is not None:
        raise CliFailure("use only one of --payload or --payload-file")
    text = payload
    if payload_file is not None:
        text = sys.stdin.read() if payload_file == "-" else Path(payload_file).read_text()
    if text is None or not text.strip():
        return {}
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise CliFailure("--payload must be a JSON object") from None
    if not isinstance(value, dict):
        raise CliFailure("--payload must be a JSON object")
    return value


@app.command
def run(
    name: str,
    *,
    command: str = "poll",
    payload: Annotated[str | None, Parameter(help="JSON object sent as the job payload.")] = None,
    payload_file: Annotated[str | None, Parameter(help="Read the payload from a file, or - for stdin.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    idempotency_key: Annotated[str | None, Parameter(
        help="Sent as Idempotency-Key: a repeat with the same key answers with the first job instead of "
             "enqueuing again, so the run is safe to retry (the CLI itself retries a lost answer with it).")] = None,
    wait: Annotated[bool, Parameter(help="Wait until the job ends and print its outcome.")] = False,
    timeout: Annotated[str, Parameter(help="How long --wait waits (a duration: 30s, 5m; a bare number is "
                                           "seconds).")] = "5m",
    json: bool = False,
) -> int:
    """Enqueue one job of plugin NAME (``POST /plugin/NAME/COMMAND``).

    **Examples:**

        ductile plugin run echo
        ductile plugin run greeter --payload '{"name": "Ada"}' --wait
    """
    from ductile.cli.common import parse_timeout

    seconds, shown = parse_timeout(timeout)
    try:
        body = {"payload": _payload(payload, payload_file)}
        client = _client(api_url, api_key)
        if not client.api_key:
            raise CliFailure("--api-key is required (or set DUCTILE_API_KEY)")
        queued = client.request("POST", f"/plugin/{name}/{command}", body, idempotency_key=idempotency_key)
        if not wait:
            if json:
                emit_json(queued)
            else:
                print(f"Queued job {queued['job_id']} ({name} {command})")
                if queued.get("deduped"):  # stdout keeps cli.md's line; the note is for the human
                    print(f"(made earlier with this idempotency key; now {queued['status']})", file=sys.stderr)
            return 0
        deadline = time.monotonic() + seconds
        job = queued
        while time.monotonic() < deadline:
            job = client.request("GET", f"/job/{queued['job_id']}")
            if job.get("status") in TERMINAL:
                break
            time.sleep(0.2)
        else:
            raise CliFailure(f"timed out after {shown} waiting for job {queued['job_id']}")
    except CliFailure as exc:
        raise fail(exc.message, json=json) from None
    if json:
        emit_json(job)
    else:
        summary = job.get("last_error") or _summary(job.get("result"))
        print(f"Job {job['job_id']} {job['status']} in {_duration_ms(job)}ms: {summary}")
    return 0 if job.get("status") == JobStatus.SUCCEEDED else 1


def _summary(result: Any) -> str:
    if isinstance(result, dict):
        return str(result.get("result", ""))
    return "" if result is None else str(result)


def _duration_ms(job: dict[str, Any]) -> int:
    from ductile.events.timefmt import parse_rfc3339

    try:
        return (parse_rfc3339(job["completed_at"]) - parse_rfc3339(job.get("started_at") or job["created_at"])) // 1_000_000
    except (KeyError, ValueError):
        return 0


@app.command
def lock(
    name: Annotated[str | None, Parameter(help="The configured plugin to attest (or --all).")] = None,
    code: Annotated[str | None, Parameter(help="With --all: the confirmation code of the previewed change set.")] = None,
    *,
    all_: Annotated[bool, Parameter(name="--all", help="Attest every configured plugin (preview, then confirm).")] = False,
    dry_run: Annotated[bool, Parameter(name="--dry-run", help="Show what would be attested; write nothing.")] = False,
    config: Annotated[str | None, Parameter(name=["--config", "-c"], help="Config file or directory.")] = None,
    config_dir: Annotated[str | None, Parameter(name="--config-dir", help="Config directory.")] = None,
) -> int:
    """Record plugin fingerprints (keyed with the vault nonce) in .checksums; effective at the next reload.

    **Examples:**

        ductile plugin lock echo
        ductile plugin lock --all --dry-run
    """
    import os

    from ductile.app import plugin_lock as pl
    from ductile.cli.common import resolve_verified

    if all_:
        code, name = code or name, None
    elif name is None:
        raise CliFailure("plugin lock: give a plugin name or --all")
    cfg = resolve_verified(config, config_dir)  # a full load (config.md §6.3)
    environ = dict(os.environ)
    try:
        if name is not None:
            entry = pl.lock_one(cfg, name, environ, dry_run=dry_run)
            print(("Dry-run: " if dry_run else "") + pl.attested_line(entry))
            return 0
        plan = pl.plan_all(cfg, environ)
        if not plan.changes:
            print(pl.NOTHING)
            return 0
        if code is None or dry_run:
            for change in plan.changes:
                print(f"{change.mark} {change.name}")
            print(pl.PREVIEW_HINT.format(code=plan.code))
            return 0
        pl.commit_all(cfg, plan, code)
    except pl.PluginLockError as exc:
        raise CliFailure(str(exc)) from None
    for change in plan.changes:
        print(f"Removed plugin \"{change.name}\" from .checksums." if change.mark == "-" else pl.attested_line(change.entry))
    return 0
