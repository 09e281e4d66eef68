"""Every operation of ``GET /openapi.json`` × every caller → the status api.md §2-§3 specifies.

The callers: one token per scope of api.md §2.2 (and one with an unknown scope, which grants
nothing), no token, a wrong token, a ``secret_ref`` token whose secret was revoked through the
vault, and the vault admin token. The expected answer comes from ONE table, ``RULES`` (api.md §3's
"scopes (any-of)" column) with ``IMPLIES`` (§2.2's "implies" column); the cases come from the
document the daemon serves, so a route added without a rule fails
``test_every_documented_operation_has_a_scope_rule``.

A covered caller gets the operation's own 2xx (a minimal valid request: path parameters from a
real plugin, job and pipeline); an uncovered one never does: 401 without, with a bad or revoked
token (and the admin token off ``/vault/*``), 403 ``insufficient scope`` with a token lacking the
scope. One daemon, one keep-alive client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.daemon import TEST_PLUGINS, Daemon, seed_vault

# --- the rules: api.md §2.2 and §3, the one place -----------------------------------------------------

#: §2.2 "implies", applied once (as §2.2 says: implications are expanded when the caller authenticates).
IMPLIES: dict[str, tuple[str, ...]] = {
    "plugin:rw": ("plugin:ro", "plugin:catalog:ro", "plugin:invoke:ro"),
    "plugin:ro": ("plugin:catalog:ro",),
    "jobs:rw": ("jobs:ro",),
    "jobs:ro": ("jobs:status:ro", "jobs:tree:ro", "jobs:logs:ro", "jobs:result:ro"),
    "events:rw": ("events:ro",),
    "system:rw": ("system:ro",),
}
#: Every scope §2.2 lists; ``*`` passes every gateway route but not ``/vault/*``.
SCOPES = ("*", "plugin:rw", "plugin:ro", "plugin:catalog:ro", "plugin:invoke:ro", "jobs:rw", "jobs:ro",
          "jobs:status:ro", "jobs:tree:ro", "jobs:logs:ro", "jobs:result:ro", "events:rw", "events:ro",
          "system:rw", "system:ro")

OPEN = "open"  # no authentication at all
TOKEN = "token"  # any valid API token, whatever its scopes
VAULT_ADMIN = "vault admin"  # only the vault admin token (§2.3)
#: A rule is one of the three above, or the any-of scope sets a caller must ALL satisfy (§3's column;
#: a ``write`` command and ``/job-logs?query=`` add a second requirement to the route's).
Rule = str | tuple[frozenset[str], ...]


def any_of(*scopes: str) -> tuple[frozenset[str], ...]:
    return (frozenset(scopes),)


READ_COMMAND = "POST /plugin/<p>/<read command>"
WRITE_COMMAND = "POST /plugin/<p>/<write command>"
NAMED_PIPELINE = "POST /pipeline/<name>"
RULES: dict[str, Rule] = {
    "GET /": OPEN,
    "GET /healthz": OPEN,
    "GET /plugins": TOKEN,
    "GET /skills": TOKEN,
    "GET /openapi.json": TOKEN,
    "GET /.well-known/ai-plugin.json": TOKEN,
    "GET /plugin/{plugin}/openapi.json": TOKEN,
    "GET /plugin/{plugin}": any_of("plugin:catalog:ro", "plugin:rw"),
    "POST /plugin/{plugin}/{command}": any_of("plugin:invoke:ro", "plugin:rw"),  # sent with a read command
    READ_COMMAND: any_of("plugin:invoke:ro", "plugin:rw"),
    WRITE_COMMAND: (*any_of("plugin:invoke:ro", "plugin:rw"), frozenset({"plugin:rw"})),
    "POST /pipeline/{name}": any_of("plugin:rw"),
    NAMED_PIPELINE: any_of("plugin:rw"),
    "GET /job/{job_id}": any_of("jobs:status:ro", "jobs:rw"),
    "GET /job/{job_id}/tree": any_of("jobs:tree:ro", "jobs:rw"),
    "GET /jobs": any_of("jobs:status:ro", "jobs:rw"),
    "GET /job-logs": any_of("jobs:logs:ro", "jobs:rw"),
    "GET /job-logs?query=": (*any_of("jobs:logs:ro", "jobs:rw"), frozenset({"jobs:result:ro"})),
    "GET /scheduler/jobs": any_of("jobs:status:ro", "jobs:rw"),
    "GET /analytics/summary": any_of("jobs:status:ro", "jobs:rw"),
    "GET /analytics/queue": any_of("jobs:status:ro", "jobs:rw"),
    "GET /stopwatch/{plugin}": any_of("jobs:status:ro", "jobs:rw"),
    "GET /topology": any_of("system:ro", "system:rw"),
    "POST /system/breaker/{plugin}/reset": any_of("system:rw"),
    "POST /system/reload": any_of("system:rw"),
    "GET /config/view": any_of("system:ro", "system:rw"),
    "GET /system/doctor": any_of("system:ro", "system:rw"),
    "GET /system/selfcheck": any_of("system:ro", "system:rw"),
    "GET /metrics": any_of("system:ro", "system:rw"),
    "GET /events": any_of("events:ro", "events:rw"),
    "POST /vault/principal": VAULT_ADMIN,
    "POST /vault/secret": VAULT_ADMIN,
    "POST /vault/secret/roll": VAULT_ADMIN,
    "POST /vault/secret/revoke": VAULT_ADMIN,
    "POST /vault/principal/roll": VAULT_ADMIN,
    "POST /vault/principal/revoke": VAULT_ADMIN,
    "POST /vault/principal/purge": VAULT_ADMIN,
    "GET /vault/audit": VAULT_ADMIN,
}
#: Cases the document does not list as operations of their own: the document itself, and the
#: ``query`` filter that §2.2 guards with a second scope.
EXTRA_CASES = ("GET /openapi.json", "GET /job-logs?query=")

# --- the daemon -------------------------------------------------------------------------------------

PLUGIN, READ, WRITE, PIPELINE = "shellok", "poll", "custom_cmd", "matrix-pipe"
PRINCIPAL, SECRET = "matrix-consumer", "matrix-secret"
#: The admin token's requests change the vault, so ``/vault/*`` runs in this order, each step valid
#: after the one before.
VAULT_BODIES: dict[str, dict[str, Any] | None] = {
    "POST /vault/principal": {"name": PRINCIPAL, "kind": "consumer"},
    "POST /vault/secret": {"name": SECRET, "value": "s" * 32},
    "POST /vault/secret/roll": {"name": SECRET, "value": "t" * 32},
    "POST /vault/secret/revoke": {"name": SECRET},
    "POST /vault/principal/roll": {"name": PRINCIPAL},
    "POST /vault/principal/revoke": {"name": PRINCIPAL},
    "POST /vault/principal/purge": {"name": PRINCIPAL},
    "GET /vault/audit": None,
}
REVOKED_REF = "matrix-revoked-token"
REVOKED_VALUE = "r" * 43
WRONG = "w" * 43
TOKENS = {f"tok-{scope.replace(':', '-').replace('*', 'star')}": scope for scope in SCOPES}
UNKNOWN_SCOPE_TOKEN = "tok-unknown"  # §2.2: an unknown scope string is kept but grants nothing


class Caller:
    def __init__(self, name: str, bearer: str | None, scopes: frozenset[str] | None = None, admin: bool = False,
                 message: str = "invalid token") -> None:
        self.name, self.bearer, self.admin, self.message = name, bearer, admin, message
        self.scopes = scopes  # None: not a valid API token

    def headers(self) -> dict[str, str]:
        return {} if self.bearer is None else {"Authorization": f"Bearer {self.bearer}"}


def expand(scope: str) -> frozenset[str]:
    out, todo = set(), [scope]
    while todo:
        s = todo.pop()
        out.add(s)
        todo.extend(IMPLIES.get(s, ()))
    return frozenset(out)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, list[Caller], str]]:
    root = tmp_path_factory.mktemp("matrix")
    tokens: list[dict[str, Any]] = [{"token": t, "scopes": [s]} for t, s in TOKENS.items()]
    tokens.append({"token": UNKNOWN_SCOPE_TOKEN, "scopes": ["made:up"]})
    tokens.append({"secret_ref": REVOKED_REF, "scopes": ["*"]})
    d = Daemon(root / "gw", {PLUGIN: {"enabled": True}, "behave": {"enabled": True, "retry": {"max_attempts": 1}}},
               service={"shutdown_grace": "1s"}, tokens=tokens, plugin_roots=[str(TEST_PLUGINS)])
    _, admin = seed_vault(d.root, {REVOKED_REF: REVOKED_VALUE})
    d.config["pipelines"] = [{"name": PIPELINE, "on": "matrix.never", "steps": [{"uses": PLUGIN}]}]
    d.write_config()
    d.client.headers["Authorization"] = "Bearer tok-star"
    d.start()
    # The secret_ref token works until its secret is revoked through the vault, then never again.
    revoked = {"Authorization": f"Bearer {REVOKED_VALUE}"}
    assert d.client.get("/plugins", headers=revoked).status_code == 200
    resp = d.client.post("/vault/secret/revoke", json={"name": REVOKED_REF}, headers={"Authorization": f"Bearer {admin}"})
    assert resp.status_code == 200, resp.text
    job_id = d.trigger(PLUGIN)
    d.wait_job(job_id)
    callers = [Caller(name, name, expand(scope)) for name, scope in TOKENS.items()]
    callers += [
        Caller(UNKNOWN_SCOPE_TOKEN, UNKNOWN_SCOPE_TOKEN, frozenset({"made:up"})),
        Caller("no token", None, message="missing or invalid Authorization header"),
        Caller("wrong token", WRONG),
        Caller("revoked secret_ref", REVOKED_VALUE),
        Caller("vault admin", admin, admin=True),
    ]
    try:
        yield d, callers, job_id
    finally:
        d.close()


# --- the cases --------------------------------------------------------------------------------------

def rule_key(method: str, path: str, op: dict[str, Any], command_types: dict[str, str]) -> str:
    """The ``RULES`` key of one documented operation (a per-command or per-pipeline path maps to its kind)."""
    if method == "POST" and (m := re.fullmatch(r"/plugin/([^/{}]+)/([^/{}]+)", path)):
        return READ_COMMAND if command_types[f"{m[1]}/{m[2]}"] == "read" else WRITE_COMMAND
    if method == "POST" and re.fullmatch(r"/pipeline/[^/{}]+", path):
        return NAMED_PIPELINE
    return f"{method} {path}"


def documented(d: Daemon) -> list[tuple[str, str, dict[str, Any]]]:
    doc = d.client.get("/openapi.json").json()
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def command_types(d: Daemon, plugins: set[str]) -> dict[str, str]:
    out = {}
    for p in plugins:
        for c in d.client.get(f"/plugin/{p}").json()["commands"]:
            out[f"{p}/{c['name']}"] = c["type"]
    return out


def concrete(method: str, path: str, job_id: str) -> tuple[str, dict[str, Any] | None]:
    """The minimal valid request of one operation: its URL and its JSON body."""
    key = f"{method} {path}"
    if key in VAULT_BODIES:
        return path, VAULT_BODIES[key]
    url = path.replace("{job_id}", job_id).replace("{plugin}", PLUGIN).replace("{command}", READ)
    url = url.replace("{name}", PIPELINE)
    if url.startswith("/pipeline/"):
        url += "?async=true"
    if key == "GET /job-logs?query=":
        url = "/job-logs?query=x"
    return url, ({} if method == "POST" else None)


def expected(rule: Rule, caller: Caller, ok: set[int]) -> tuple[set[int], str | None]:
    """The statuses api.md allows ``caller`` on an operation with ``rule``, and the error message."""
    if rule == OPEN:
        return ok, None
    if rule == VAULT_ADMIN:
        if caller.admin:
            return ok, None
        if caller.bearer is None:
            return {401}, caller.message
        return {401}, "invalid vault admin token"
    if caller.scopes is None:  # no token, a bad one, a revoked one, or the admin token off /vault/*
        return {401}, caller.message
    if rule == TOKEN:
        return ok, None
    assert isinstance(rule, tuple)
    if "*" in caller.scopes or all(caller.scopes & need for need in rule):
        return ok, None
    return {403}, "insufficient scope"


def send(client: httpx.Client, method: str, url: str, body: dict[str, Any] | None, caller: Caller) -> tuple[int, Any]:
    if url == "/events":  # a stream never ends: its status and headers are the answer
        with client.stream("GET", url, headers=caller.headers()) as resp:
            if resp.status_code == 200:
                assert resp.headers["content-type"].startswith("text/event-stream")
                return 200, None
            resp.read()
            return resp.status_code, resp.json()
    resp = client.request(method, url, headers=caller.headers(), json=body)
    return resp.status_code, resp.json() if resp.headers.get("content-type", "").startswith("application/json") else None


def cases(d: Daemon) -> list[tuple[str, str, set[int]]]:
    ops = documented(d)
    types = command_types(d, {m[1] for _, p, _ in ops if (m := re.fullmatch(r"/plugin/([^/{}]+)/[^/{}]+", p))})
    out = []
    for method, path, op in ops:
        ok = {int(code) for code in op["responses"] if code.startswith("2")}
        if path.startswith("/pipeline/"):
            ok = {202}  # sent with ?async=true (pipelines.md §9)
        if path == "/system/reload":
            # The config names the revoked secret, so config.md's secret_ref check refuses the reload
            # (§3's 409, the old config keeps running): an answer only a caller past the guard gets.
            ok = {409}
        out.append((rule_key(method, path, op, types), f"{method} {path}", ok))
    out += [(key, key, {200}) for key in EXTRA_CASES]
    vault_order = list(VAULT_BODIES)
    return sorted(out, key=lambda c: vault_order.index(c[1]) + 1 if c[1] in VAULT_BODIES else 0)


def test_every_documented_operation_has_a_scope_rule(matrix: tuple[Daemon, list[Caller], str]) -> None:
    d, _, _ = matrix
    keys = {key for key, _, _ in cases(d)}
    assert keys - RULES.keys() == set(), "a documented operation has no rule in RULES (api.md §3)"
    # And no rule is stale: each one names an operation the document (or EXTRA_CASES) has.
    assert RULES.keys() - keys == set()


def test_each_operation_answers_each_caller_as_api_md_says(matrix: tuple[Daemon, list[Caller], str]) -> None:
    d, callers, job_id = matrix
    wrong: list[str] = []
    sent = 0
    with httpx.Client(base_url=d.url, timeout=15) as client:
        for key, label, ok in cases(d):
            rule = RULES[key]
            method, path = label.split(" ", 1)
            url, body = concrete(method, path, job_id)
            for caller in callers:
                statuses, message = expected(rule, caller, ok)
                status, answer = send(client, method, url, body, caller)
                sent += 1
                got_message = answer.get("error") if isinstance(answer, dict) else None
                if status not in statuses or (message is not None and got_message != message):
                    wrong.append(f"{label} as {caller.name}: {status} {answer!r:.120}, "
                                 f"expected {sorted(statuses)} {message or ''}")
    assert sent > 400
    assert not wrong, "\n".join(wrong)
