"""The canary test of vault.md §14: secret values never leave ``vault.age``.

Random canaries go through every path a value takes or could stray into: set (manual, through the
CLI), roll (manual with a new canary, auto with the minted value read back by ``vault get`` as a
further canary), a refused set of a different canary (CLI and API), invalid JSON and a wrong admin
token carrying one, a delivery to an attested plugin that echoes it, a failing plugin that spills it
to stderr, its logs and its error, and revoke; webhook traffic signed with a canary HMAC key
(accepted, replayed, forged), that key rolled to another canary, old and new key tried; an SSE
stream is captured throughout. Then the raw
bytes of the state DB and its WAL (running and stopped; on PostgreSQL every row of every table and
every file the server wrote), the daemon's log, every file in the config
dir but vault.age, every CLI stdout/stderr, every HTTP body, the SSE stream and the gateway's own
argv/environment are searched: zero hits. The real daemon, the real CLI in subprocesses, real HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ductile.config.checksums import Checksums, write_checksums
from ductile.events.pg_connections import pg_tables
from ductile.events.postgres_store import PostgresStore
from ductile.events.store import StoreKind
from ductile.vault.keys import generate_identity, write_key_file
from ductile.webhook_signatures import sign
from tests.integration.daemon import TOKEN, Daemon, call, error_of, free_port, wait_until
from tests.pg_server import PgServer

IMMUTABLE = "vault: secret value is immutable via set; use roll"


# A plugin that fails and spills the value everywhere it can: stderr, a log line, its error.
# It also says whether the value reached it by argv or the environment (§14: never).
LEAKY = """#!/usr/bin/env python3
import json
import os
import sys

value = (json.load(sys.stdin).get("secrets") or {}).get("smtp_pw", "")
outside = any(value in v for v in [*sys.argv, *os.environ.values()])
print(f"cannot log in with {value}", file=sys.stderr)
print(json.dumps({"status": "error", "error": f"login refused for {value} (argv/env: {outside})",
                  "logs": [{"level": "error", "message": f"password {value} rejected"}]}))
"""


def webhook_traffic(run: Run, key: str, rolled: str) -> str:
    """Deliveries signed with the webhook key ``key`` (accepted, replayed, forged), a roll to
    ``rolled`` through the CLI, then the old key refused and the new one accepted. Every answer joins
    the searched bytes; the log must not hold a signature or a body either (webhooks.md §2).
    Returns the first accepted delivery's job id."""
    listen = run.gw.config["webhooks"]["listen"]
    url = f"http://{listen}/hook/canary"
    wait_until(lambda: _answers(f"http://{listen}/healthz"), 10, what="the webhook listener")
    body = json.dumps({"marker": canary()}).encode()
    signatures: list[str] = []

    def post(secret: str, expected: int, sent: str = "") -> httpx.Response:
        sent = sent or str(int(time.time()))
        signature = sign(secret, body, sent)
        signatures.append(signature.removeprefix("sha256="))
        resp = httpx.post(url, content=body, timeout=10,
                          headers={"X-Hub-Signature-256": signature, "X-Ductile-Timestamp": sent})
        run.seen.append((f"POST /hook/canary ({expected})", resp.content))
        assert resp.status_code == expected, resp.text
        return resp

    first = str(int(time.time()))
    job_id = str(post(key, 202, first).json()["job_id"])
    assert post(key, 409, first).json()["job_id"] == job_id  # the replay guard's record holds no key either
    post(key + "x", 403)
    roll = run.cli("vault", "roll", "--name", "webhook_key", "--config", str(run.gw.root), stdin=rolled + "\n")
    assert roll.returncode == 0, roll.stderr
    post(key, 403)
    post(rolled, 202)
    assert run.gw.wait_job(job_id)["status"] == "succeeded"
    log = run.gw.log_text()
    assert body.decode() not in log and not [s for s in signatures if s in log]
    return job_id


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def canary() -> str:
    return f"CANARY-{uuid.uuid4()}"


class SseTap:
    """The raw bytes of one ``GET /events`` stream, as a client receives them, until the gateway stops."""

    def __init__(self, url: str) -> None:
        self.body = bytearray()
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with httpx.Client(timeout=httpx.Timeout(30, read=None)) as client, \
                    client.stream("GET", url + "/events", headers=headers) as resp:
                self.status = resp.status_code
                for chunk in resp.iter_raw():
                    self.body += chunk
        except httpx.HTTPError:
            return  # the gateway stopped: the stream ends here

    def join(self) -> None:
        self._thread.join(timeout=10)


class Run:
    """The gateway plus every byte the test saw come out of it: CLI output and HTTP bodies."""

    def __init__(self, gw: Daemon, server: PgServer | None = None) -> None:
        self.gw = gw
        self.server = server  # the test PostgreSQL server holding the log, on the postgres store
        self.admin_token = ""
        self.seen: list[tuple[str, bytes]] = []  # (what, bytes) to search

    def cli(self, *args: str, stdin: str | None = None, shows_value: bool = False) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "DUCTILE_VAULT_TOKEN"}
        if self.admin_token:
            env["DUCTILE_VAULT_TOKEN"] = self.admin_token  # the token by environment, never argv
        done = subprocess.run([sys.executable, "-m", "ductile.cli.main", *args], input=stdin, capture_output=True,
                              text=True, timeout=60, cwd=self.gw.root, env=env)
        what = " ".join(args[:3])
        # `vault get` exists to print the value on stdout: that one stream is exempt (§14 is about
        # values escaping where they were not asked for). Its stderr is searched like any other.
        if not shows_value:
            self.seen.append((f"stdout of {what}", done.stdout.encode()))
        self.seen.append((f"stderr of {what}", done.stderr.encode()))
        return done

    def post(self, path: str, content: bytes, token: str) -> httpx.Response:
        resp = call(self.gw, "POST", path, token=token, content=content, headers={"content-type": "application/json"})
        self.seen.append((f"POST {path}", resp.content))
        return resp

    def get(self, path: str) -> httpx.Response:
        resp = call(self.gw, "GET", path)
        assert resp.status_code == 200, (path, resp.text)
        self.seen.append((f"GET {path}", resp.content))
        return resp

    def files(self, label: str) -> None:
        db = self.gw.state_db
        for path in (db, db.with_name(db.name + "-wal"), self.gw.log_path):
            if path.exists():
                self.seen.append((f"{label} {path.name}", path.read_bytes()))
        if self.server is not None:
            # The log on PostgreSQL: every row of every table as the server answers it, and every
            # byte the server wrote (its WAL and its table files, every database it holds).
            conn = PostgresStore(self.gw.config["state"]["url"]).reader()
            try:
                for table in sorted(pg_tables(conn)):
                    rows = conn.execute(f"SELECT * FROM {table}").fetchall()
                    self.seen.append((f"{label} table {table}", repr(rows).encode()))
            finally:
                conn.close()
            for path in sorted(self.server.data.rglob("*")):
                if path.is_file():
                    self.seen.append((f"{label} server file {path.relative_to(self.server.data)}", path.read_bytes()))


@pytest.fixture(params=[StoreKind.SQLITE, StoreKind.POSTGRES])
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Run]:
    """The canary run on each event store (tests/stores.py): a SQLite file, or a database on the
    test PostgreSQL server."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    root = tmp_path / "gw"
    shutil.copytree(Path(__file__).parents[1] / "plugins" / "secretsha", root / "plugins" / "secretsha")
    leaky = root / "plugins" / "secretleak"
    leaky.mkdir()
    (leaky / "manifest.yaml").write_text((root / "plugins" / "secretsha" / "manifest.yaml").read_text()
                                         .replace("name: secretsha", "name: secretleak"))
    (leaky / "run.py").write_text(LEAKY)
    (leaky / "run.py").chmod(0o755)
    once = {"enabled": True, "retry": {"max_attempts": 1}}
    shutil.copytree(Path(__file__).parents[1] / "plugins" / "hookrecv", root / "plugins" / "hookrecv")
    gw = Daemon(root, plugins={"secretsha": once, "secretleak": once, "hookrecv": once},
                plugin_roots=[str(root / "plugins")])
    server: PgServer | None = None
    if request.param is StoreKind.POSTGRES:
        server = request.getfixturevalue("pg_server")
        gw.config["state"] = {"url": request.getfixturevalue("pg_url")}
        gw.write_config()

    try:
        yield Run(gw, server)
    finally:
        gw.close()


def test_no_canary_value_appears_outside_the_vault(run: Run) -> None:
    gw = run.gw
    manual, rolled, refused_cli, refused_api, in_bad_json, with_bad_token = (canary() for _ in range(6))
    hook_key, hook_rolled = canary(), canary()  # the webhook endpoint's HMAC key, before and after a roll

    write_key_file(gw.root / "age.key", generate_identity(), "test")
    init = run.cli("vault", "init", "--config", str(gw.root))
    assert init.returncode == 0, init.stderr
    run.admin_token = init.stdout.strip()  # an admin token is a credential, not a canary: its stdout is searched too
    write_checksums(gw.root, Checksums(generated_at="2026-12-06T00:00:00Z"))  # `config lock` is issue 12's
    for plugin in ("secretsha", "secretleak"):
        locked = run.cli("plugin", "lock", plugin, "--config-dir", str(gw.root))
        assert locked.returncode == 0, locked.stderr
    # A webhook endpoint's secret_ref must resolve at boot, and `vault set` needs the running
    # gateway: set the key, then restart with the endpoint configured.
    gw.start()
    keyed = run.cli("vault", "set", "--name", "webhook_key", "--config", str(gw.root), stdin=hook_key + "\n")
    assert keyed.returncode == 0, keyed.stderr
    gw.stop()
    gw.config["webhooks"] = {"listen": f"127.0.0.1:{free_port()}", "endpoints": [{
        "path": "/hook/canary", "plugin": "hookrecv", "secret_ref": "webhook_key",
        "signature_header": "X-Hub-Signature-256", "timestamp_header": "X-Ductile-Timestamp"}]}
    gw.write_config()
    gw.start()
    sse = SseTap(gw.url)
    wait_until(lambda: sse.status == 200, 10, what="the SSE stream")
    hook_job = webhook_traffic(run, hook_key, hook_rolled)

    steps = [
        (("vault", "register-principal", "--name", "secretsha"), None),
        (("vault", "register-principal", "--name", "secretleak"), None),
        (("vault", "set", "--name", "smtp_pw", "--principal", "secretsha,secretleak"), manual + "\n"),
        (("vault", "set", "--name", "hook_key", "--pattern", "auto", "--principal", "secretsha"), None),
        (("vault", "roll", "--name", "smtp_pw"), rolled + "\n"),
        (("vault", "roll", "--name", "hook_key"), ""),
    ]
    for args, stdin in steps:
        done = run.cli(*args, "--config", str(gw.root), stdin=stdin)
        assert done.returncode == 0, (args, done.stderr)
    got = run.cli("vault", "get", "--name", "hook_key", "--config", str(gw.root), shows_value=True)
    assert got.returncode == 0, got.stderr
    minted = got.stdout.strip()
    assert len(minted) == 43
    canaries = [manual, rolled, refused_cli, refused_api, in_bad_json, with_bad_token, minted, hook_key, hook_rolled]

    # Refusals that carry a value: a set of an existing secret with another value, through the CLI
    # and the API; a body that is not JSON; a right body under a wrong admin token.
    again = run.cli("vault", "set", "--name", "smtp_pw", "--config", str(gw.root), stdin=refused_cli + "\n")
    assert (again.returncode, again.stderr.strip()) == (1, f"error: /vault/secret failed (400): {IMMUTABLE}")
    resp = run.post("/vault/secret", json.dumps({"name": "smtp_pw", "value": refused_api}).encode(), run.admin_token)
    assert (resp.status_code, error_of(resp)) == (400, IMMUTABLE)
    resp = run.post("/vault/secret", b'{"name": "smtp_pw", "value": "' + in_bad_json.encode() + b'"',
                    run.admin_token)
    assert (resp.status_code, error_of(resp)) == (400, "invalid JSON body")
    resp = run.post("/vault/secret", json.dumps({"name": "other", "value": with_bad_token}).encode(),
                    "not-the-admin-token")
    assert (resp.status_code, error_of(resp)) == (401, "invalid vault admin token")

    # A delivery: the plugin receives the rolled value and echoes it; the gateway redacts it.
    job_id = gw.trigger("secretsha")
    job = gw.wait_job(job_id)
    assert job["status"] == "succeeded", json.dumps(job)
    digest = hashlib.sha256(rolled.encode()).hexdigest()
    assert job["result"]["result"] == f"names=hook_key,smtp_pw sha256={digest} echo=[REDACTED:smtp_pw]"
    run.get(f"/job/{job_id}")
    spilled = gw.wait_job(gw.trigger("secretleak"))
    assert spilled["status"] == "failed", json.dumps(spilled)
    assert "login refused for [REDACTED:smtp_pw] (argv/env: False)" in spilled["last_error"], json.dumps(spilled)
    run.get(f"/job/{spilled['job_id']}")

    revoked = run.cli("vault", "revoke", "--name", "smtp_pw", "--config", str(gw.root))
    assert revoked.returncode == 0, revoked.stderr
    after = gw.wait_job(gw.trigger("secretsha"))  # a spawn after the revoke: the value is gone for good
    run.get(f"/job/{after['job_id']}")
    assert after["result"]["result"] == "names=hook_key sha256=- echo=", json.dumps(after)
    for args in (("vault", "list", "--json"), ("vault", "list", "--principals"), ("vault", "status", "--json"),
                 ("vault", "audit"), ("system", "vault-audit", "--json")):
        done = run.cli(*args, "--config", str(gw.root))
        assert done.returncode == 0, (args, done.stderr)
    wait_until(lambda: job_id.encode() in sse.body, 10, what="the delivery's job on the SSE stream")
    assert hook_job.encode() in sse.body  # the webhook job's frames are in the searched stream
    run.files("while running:")
    assert gw.proc is not None
    for part in ("cmdline", "environ"):  # the gateway's own argv and environment
        run.seen.append((f"gateway {part}", Path(f"/proc/{gw.proc.pid}/{part}").read_bytes()))
    gw.stop()
    sse.join()
    run.seen.append(("the SSE stream", bytes(sse.body)))
    run.files("after stop:")
    # Every other file the gateway and the CLI left in the config dir (.checksums, config, state dir).
    for path in sorted(gw.root.rglob("*")):
        if path.is_file() and path.name != "vault.age":
            run.seen.append((f"file {path.relative_to(gw.root)}", path.read_bytes()))
    # Backups (issue 14) join the searched bytes here: each member except config/vault.age, at every scope.

    # The search looks where a leak would land: the plugins' echoed and spilled values reached the
    # log, the job bodies and the SSE stream, redacted.
    redacted = {what.split(" ")[-1] for what, data in run.seen if b"[REDACTED:smtp_pw]" in data}
    assert {"gateway.log", "stream", f"/job/{job_id}", f"/job/{spilled['job_id']}"} <= redacted, redacted
    leaks = [(what, c) for what, data in run.seen for c in canaries if c.encode() in data]
    assert not leaks, leaks
    blob = (gw.root / "vault.age").read_bytes()
    assert not any(c.encode() in blob for c in canaries)  # even vault.age holds them only encrypted
