#!/usr/bin/env python3
"""Test plugin for the malformed plugin corpus: payload.mode picks one way to break protocol 2.

The mode must be the payload's first key: ``stdin_closed`` is recognised from the first bytes of
the request, before the rest is read (the plugin closes stdin early). ``pidfile`` (when given)
receives the pids of the processes a mode leaves behind.
"""
import json
import os
import signal
import subprocess
import sys
import time

head = os.read(0, 4096)
if b'"mode":"stdin_closed"' in head:
    os.close(0)  # the rest of the (large) request is never read
    sys.stdout.write('{"status": "ok", "result": "answered without reading"}')
    sys.exit(0)
request = json.loads(head + sys.stdin.buffer.read())
payload = request.get("payload") or {}
mode = payload.get("mode")
MIB = 1024 * 1024


def write(data):
    out = sys.stdout.buffer
    out.write(data if isinstance(data, bytes) else data.encode())
    out.flush()


def pids(*ps):
    if payload.get("pidfile"):
        with open(payload["pidfile"], "w") as f:
            f.write(" ".join(map(str, ps)))


if mode == "ok":
    write('{"status": "ok", "result": "fine"}')
elif mode == "sleep":
    time.sleep(float(payload.get("seconds", 1)))
    write('{"status": "ok", "result": "slept"}')
elif mode == "nonjson":
    write("this is not json\n")
elif mode == "empty":
    pass
elif mode == "stdout_11mib":
    chunk = b"x" * 65536
    for _ in range(11 * 16):
        write(chunk)
elif mode == "line_1mib":
    write('{"status": "ok", "result": "' + "l" * MIB + '"}')
elif mode == "binary":
    write(bytes(range(256)) * 64)
elif mode == "invalid_utf8":
    write(b'{"status": "ok", "result": "\xff\xfe\xc3("}')
elif mode == "no_status":
    write('{"result": "where is my status"}')
elif mode == "status_mistyped":
    write('{"status": 1, "result": "status is a number"}')
elif mode == "status_unknown":
    write('{"status": "maybe", "result": "status is no status"}')
elif mode == "hang":
    time.sleep(60)
elif mode == "ignore_sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids(os.getpid())
    time.sleep(60)
elif mode == "child_holds_stdout":
    child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)  # inherits stdout and stderr
    pids(child.pid)
    write('{"status": "ok", "result": "answered"}')
elif mode == "fork_fanout":
    devnull = subprocess.DEVNULL
    kids = [subprocess.Popen(["sleep", "60"], stdin=devnull, stdout=devnull, stderr=devnull).pid for _ in range(20)]
    pids(*kids)
    write(json.dumps({"status": "ok", "result": f"forked {len(kids)}"}))
elif mode == "exit_137":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "stderr_5mib":
    err = sys.stderr.buffer
    err.write(b"HEAD-MARKER\n")
    for _ in range(5 * 16):
        err.write(b"e" * 65536)
    err.write(b"\nTAIL-MARKER\n")
    err.flush()
    write('{"status": "ok", "result": "noisy but fine"}')
elif mode == "huge_int_state":
    write(json.dumps({"status": "ok", "result": "big", "state_updates": {"big": 2**64}}))
elif mode == "huge_int_event":
    write(json.dumps({"status": "ok", "result": "big", "events": [{"type": "big.number", "payload": {"n": -(2**70)}}]}))
elif mode == "deep_nesting":
    write(b"[" * 100_000 + b"]" * 100_000)
elif mode == "error_1mib":
    write(json.dumps({"status": "error", "error": "E" * MIB, "retry": False}))
else:
    write(json.dumps({"status": "error", "error": f"unknown mode {mode}", "retry": False}))
