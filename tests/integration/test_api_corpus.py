"""The API abuse corpus (issue 16 item 3): hostile requests never break the API (api.md §1-§2, §5).

One daemon serves the module. Every case is sent byte for byte (a raw socket: no client library
tidies it up) and must be answered with the status api.md specifies and a JSON body, never a 5xx.
Slow partial requests are opened when the daemon starts, so the 10 s read timeout that closes them
runs while the other cases do; many SSE clients that never read or vanish share one test.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.integration.daemon import TOKEN, Daemon, RawResponse, call, raw_request, wait_until

MIB = 1024 * 1024
AUTH = ("Authorization", f"Bearer {TOKEN}")
JSON = ("Content-Type", "application/json")
INVALID_JSON = "invalid JSON body"
TOO_DEEP = "JSON body nested too deeply (at most 128 levels)"
TOO_WIDE = "JSON integer out of range at $.payload.n (integers must fit in 64 bits)"
NO_AUTH = "missing or invalid Authorization header"
READ_TIMEOUT = 10  # api.md §1
PLUGINS = {"behave": {"enabled": True, "retry": {"max_attempts": 1}}}


class Case(NamedTuple):
    id: str
    method: str
    path: str
    body: bytes
    status: int
    error: str | None  # the exact {"error": ...}; None for a success
    headers: tuple[tuple[str, str], ...] = (AUTH, JSON)


def post(id: str, body: bytes, status: int, error: str | None, headers: tuple[tuple[str, str], ...] = (AUTH, JSON),
         path: str = "/plugin/behave/poll") -> Case:
    return Case(id, "POST", path, body, status, error, headers)


def get(id: str, path: str, status: int, error: str | None, headers: tuple[tuple[str, str], ...] = (AUTH,)) -> Case:
    return Case(id, "GET", path, b"", status, error, headers)


def nested(depth: int) -> bytes:
    """A body whose payload holds ``depth - 2`` nested lists, so the whole body nests ``depth`` levels."""
    return b'{"payload": {"v": ' + b"[" * (depth - 2) + b"]" * (depth - 2) + b"}}"


def sized(size: int) -> bytes:
    head, tail = b'{"command": "poll", "pad": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


BREAKER = "/system/breaker/behave/reset"
CASES = [
    # malformed JSON and bodies that are no object
    post("truncated", b'{"payload":', 400, INVALID_JSON),
    post("trailing-garbage", b'{"payload": {}} x', 400, INVALID_JSON),
    post("single-quotes", b"{'payload': {}}", 400, INVALID_JSON),
    post("body-array", b"[1, 2]", 400, INVALID_JSON),
    post("body-string", b'"payload"', 400, INVALID_JSON),
    post("payload-string", b'{"payload": "x"}', 400, "payload must be a JSON object"),
    post("empty-body-is-{}", b"", 202, None),
    # content types: the body is JSON whatever the header says (api.md §1)
    post("text-plain", b'{"payload": {}}', 202, None, (AUTH, ("Content-Type", "text/plain"))),
    post("no-content-type", b'{"payload": {}}', 202, None, (AUTH,)),
    post("form-urlencoded", b"payload=1&x=2", 400, INVALID_JSON,
         (AUTH, ("Content-Type", "application/x-www-form-urlencoded"))),
    post("multipart", b'--b\r\nContent-Disposition: form-data; name="payload"\r\n\r\n{}\r\n--b--\r\n', 400,
         INVALID_JSON, (AUTH, ("Content-Type", "multipart/form-data; boundary=b"))),
    post("latin-1-body", b'{"payload": {"x": "caf\xe9"}}', 400, INVALID_JSON,
         (AUTH, ("Content-Type", "application/json; charset=latin-1"))),
    # sizes: 10 MiB is the limit (api.md §1)
    post("body-10mib", sized(10 * MIB), 200, None, path=BREAKER),
    post("body-10mib+1", sized(10 * MIB + 1), 413, "request body too large", path=BREAKER),
    post("body-11mib", sized(11 * MIB), 413, "request body too large", path=BREAKER),
    # nesting and numbers
    post("nesting-128", nested(128), 202, None),
    post("nesting-129", nested(129), 400, TOO_DEEP),
    post("nesting-100000", nested(100_000), 400, TOO_DEEP),
    post("int-2^64-1", b'{"payload": {"n": %d}}' % (2**64 - 1), 202, None),
    post("int-2^64", b'{"payload": {"n": %d}}' % 2**64, 400, TOO_WIDE),
    post("int--2^63-1", b'{"payload": {"n": %d}}' % (-(2**63) - 1), 400, TOO_WIDE),
    post("int-10^400", b'{"payload": {"n": 1' + b"0" * 400 + b"}}", 400, TOO_WIDE),
    post("NaN", b'{"payload": {"x": NaN}}', 400, INVALID_JSON),
    post("Infinity", b'{"payload": {"x": Infinity}}', 400, INVALID_JSON),
    post("-Infinity", b'{"payload": {"x": -Infinity}}', 400, INVALID_JSON),
    post("float-1e400", b'{"payload": {"x": 1e400}}', 400, INVALID_JSON),
    # unicode
    post("lone-surrogate", b'{"payload": {"x": "\\ud800"}}', 400, INVALID_JSON),
    post("nul-escape", b'{"payload": {"x": "a\\u0000b"}}', 202, None),
    post("emoji-rtl-combining", '{"payload": {"x": "\U0001f4a5 \u202eabc e\u0301"}}'.encode(), 202, None),
    post("utf8-bom", b'\xef\xbb\xbf{"payload": {}}', 400, INVALID_JSON),
    post("invalid-utf8", b'{"payload": {"x": "\xff\xfe"}}', 400, INVALID_JSON),
    post("overlong-utf8", b'{"payload": {"x": "\xc0\xaf"}}', 400, INVALID_JSON),
    post("unicode-plugin-name", b"{}", 400, "plugin not found", path="/plugin/%F0%9F%92%A5/poll"),
    # traversal and odd bytes in path segments
    post("traversal-plugin", b"{}", 404, "not found", path="/plugin/..%2F..%2Fetc%2Fpasswd/poll"),
    post("traversal-command", b"{}", 404, "not found", path="/plugin/behave/..%2Fpoll"),
    get("traversal-job", "/job/..%2F..%2Fetc%2Fpasswd", 404, "not found"),
    get("traversal-raw", "/../../etc/passwd", 404, "not found"),
    get("traversal-openapi", "/plugin/..%2F..%2Fetc/openapi.json", 404, "not found"),
    get("raw-0xff-in-path", "/job/\xff", 400, "invalid request"),
    get("control-byte-in-path", "/job/\x01", 400, "invalid request"),
    get("percent-ff-in-path", "/job/%ff", 404, "job not found"),
    get("percent-00-in-path", "/job/%00", 404, "job not found"),
    # long URLs and headers
    get("url-8kib", "/job/" + "a" * 8 * 1024, 404, "job not found"),
    get("url-64kib", "/job/" + "a" * 64 * 1024, 400, "invalid request"),
    get("query-1mib", "/jobs?plugin=" + "q" * MIB, 400, "invalid request"),
    get("header-32kib", "/plugins", 200, None, (AUTH, ("X-Long", "h" * 32 * 1024))),
    get("headers-over-64kib", "/plugins", 400, "invalid request", (AUTH, *((f"X-H{i}", "v" * 1024) for i in range(70)))),
    get("header-1mib", "/plugins", 400, "invalid request", (AUTH, ("X-Long", "h" * MIB))),
    get("500-headers", "/plugins", 200, None, (AUTH, *((f"X-H{i}", "v") for i in range(500)))),
    # Authorization (api.md §2.1)
    get("auth-missing", "/plugins", 401, NO_AUTH, ()),
    get("auth-empty", "/plugins", 401, NO_AUTH, (("Authorization", ""),)),
    get("auth-bearer-empty", "/plugins", 401, NO_AUTH, (("Authorization", "Bearer "),)),
    get("auth-basic", "/plugins", 401, "invalid Authorization header format", (("Authorization", "Basic eDp5"),)),
    get("auth-wrong-token", "/plugins", 401, "invalid token", (("Authorization", "Bearer nope"),)),
    get("auth-token-in-query", f"/plugins?token={TOKEN}", 401, NO_AUTH, ()),
    get("auth-duplicate-good-then-bad", "/plugins", 401, NO_AUTH,
        (AUTH, ("Authorization", "Bearer nope"))),
    get("auth-duplicate-bad-then-good", "/plugins", 401, NO_AUTH,
        (("Authorization", "Bearer nope"), AUTH)),
    get("auth-duplicate-both-good", "/plugins", 401, NO_AUTH, (AUTH, AUTH)),
    get("auth-huge-token", "/plugins", 401, "invalid token", (("Authorization", "Bearer " + "t" * 60_000),)),
    # routes and methods
    Case("unknown-method", "BREW", "/plugins", b"", 400, "invalid request", (AUTH,)),
    Case("wrong-method", "DELETE", "/healthz", b"", 405, "method not allowed", (AUTH,)),
    get("unknown-route", "/nope", 404, "not found"),
]


class Slow(NamedTuple):
    name: str
    sock: socket.socket
    opened: float


SLOW_SENDS = {
    "nothing": b"",
    "half-request-line": b"GET /heal",
    "headers-without-end": f"GET /plugins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode(),
    "body-short-of-its-length": (b"POST /plugin/behave/poll HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                                 b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n{\"payload\""),
}


class Api(NamedTuple):
    gw: Daemon
    slow: list[Slow]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    gw = Daemon(tmp_path_factory.mktemp("api_corpus") / "gw", PLUGINS, service={"shutdown_grace": "1s"})
    gw.start()
    slow = []
    try:
        for name, data in SLOW_SENDS.items():
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=READ_TIMEOUT + 10)
            s.sendall(data)
            slow.append(Slow(name, s, time.monotonic()))
        yield Api(gw, slow)
    finally:
        for s in slow:
            s.sock.close()
        gw.close()


def send(gw: Daemon, case: Case) -> RawResponse:
    if len(case.body) > 10 * MIB:
        # The gateway answers 413 on Content-Length and closes; a raw client still sending would
        # get a reset for its reply. httpx reads the answer the way a real client does.
        resp = call(gw, case.method, case.path, content=case.body, headers=dict(case.headers[1:]))
        return RawResponse(resp.status_code, dict(resp.headers), resp.content)
    return raw_request(gw.port, case.method, case.path, list(case.headers), case.body)


def healthy(gw: Daemon) -> None:
    health = call(gw, "GET", "/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_request_gets_the_specified_json_answer(api: Api, case: Case) -> None:
    before = _jobs(api.gw)
    resp = send(api.gw, case)
    assert resp.status < 500, (resp.status, resp.body[:300])
    assert resp.headers.get("content-type", "").startswith("application/json"), (resp.status, resp.body[:300])
    body = resp.json()
    if case.error is None:
        assert (resp.status, "error" not in body) == (case.status, True), body
    else:
        assert (resp.status, body) == (case.status, {"error": case.error})
        assert _jobs(api.gw) == before, "a refused request enqueued a job"
    healthy(api.gw)


def test_many_sse_clients_that_never_read_or_vanish_do_not_harm_the_gateway(api: Api) -> None:
    gw = api.gw
    assert gw.proc is not None
    rss_before = _rss_kib(gw.proc.pid)
    request = f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    stalled = []
    for i in range(60):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request)
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # an abrupt reset, mid-stream
        else:
            stalled.append(s)  # never reads
    try:
        # The gateway keeps working for everyone else: a burst of jobs (each one frames for every
        # subscriber) runs, and health answers at once.
        ids = [gw.trigger("behave", payload={"mode": "ok", "result": "r" * 4096}) for _ in range(20)]
        assert all(gw.wait_job(j, timeout=30)["status"] == "succeeded" for j in ids)
        started = time.monotonic()
        healthy(gw)
        assert time.monotonic() - started < 1
        assert _rss_kib(gw.proc.pid) - rss_before < 64 * 1024, "60 idle subscribers cost more than 64 MiB"
    finally:
        for s in stalled:
            s.close()
    wait_until(lambda: _sse_subscribers(gw) == 0, 10, what="the closed streams to be let go")


def test_slow_partial_requests_are_closed_by_the_read_timeout(api: Api) -> None:
    """Last: the connections opened at module start have had most of their 10 s already."""
    for slow in api.slow:
        slow.sock.settimeout(max(0.1, slow.opened + READ_TIMEOUT + 5 - time.monotonic()))
        try:
            data = slow.sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"{slow.name}: still open {READ_TIMEOUT + 5} s after it was opened")
        except ConnectionResetError:
            data = b""
        assert data == b"", (slow.name, data[:200])
        assert time.monotonic() - slow.opened >= READ_TIMEOUT - 0.5, slow.name
    timeouts = [line for line in api.gw.log_lines() if line.get("msg") == "http read timeout"]
    assert len(timeouts) >= len(api.slow)
    healthy(api.gw)


def _jobs(gw: Daemon) -> int:
    with gw.db() as db:
        return db.execute("SELECT COUNT(*) FROM job_queue").fetchone()[0]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _sse_subscribers(gw: Daemon) -> float:
    text = call(gw, "GET", "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("ductile_sse_subscribers"))


