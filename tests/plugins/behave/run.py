#!/usr/bin/env python3
"""Test plugin: payload.mode picks the behaviour; the request is echoed into a file if asked."""
import json
import os
import signal
import subprocess
import sys
import time

request = json.loads(sys.stdin.read())
payload = request.get("payload") or {}
if request["command"] == "handle":
    payload = request.get("event", {}).get("payload", {})
mode = payload.get("mode", "ok")
config = request.get("config", {})

if payload.get("record"):
    with open(payload["record"], "w") as f:
        json.dump({"request": request, "env": dict(os.environ)}, f)


if payload.get("stderr"):
    sys.stderr.write(payload["stderr"])
    sys.stderr.flush()


def out(obj, code=0):
    sys.stdout.write(json.dumps(obj))
    sys.stdout.flush()
    sys.exit(code)


if mode == "ok":
    out({"status": "ok", "result": payload.get("result", "fine"), "state_updates": payload.get("state_updates")}
        if payload.get("state_updates") is not None else {"status": "ok", "result": payload.get("result", "fine")})
if mode == "emit":
    out({"status": "ok", "result": payload.get("result", "emitted"), "events": payload.get("events", [])})
if mode == "ok_exit3":
    out({"status": "ok", "result": "ok despite exit 3"}, 3)
if mode == "error":
    out({"status": "error", "error": payload.get("error", "it broke")}, 1)
if mode == "error_noretry":
    out({"status": "error", "error": "permanent problem", "retry": False})
if mode == "exit78":
    out({"status": "error", "error": "bad config", "retry": True}, 78)
if mode == "nonjson":
    sys.stdout.write("this is not json\n")
    sys.exit(0)
if mode == "empty":
    sys.exit(0)
if mode == "bigout":
    chunk = "x" * 65536
    for _ in range(11 * 16 + 1):
        sys.stdout.write(chunk)
    sys.exit(0)
if mode == "bigerr":
    sys.stderr.write("HEAD-MARKER\n" + "e" * 200_000 + "\nTAIL-MARKER\n")
    out({"status": "ok", "result": "noisy but fine"})
if mode == "pretty":
    sys.stdout.write(json.dumps({"status": "ok", "result": "pretty", "unknown_key": 1}, indent=2) + "\n\n")
    sys.exit(0)
if mode == "fail_then_ok":
    # Fails until a counter file reaches payload.fail_times, then succeeds.
    path = payload["counter"]
    n = 0
    if os.path.exists(path):
        with open(path) as f:
            n = int(f.read())
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n < payload.get("fail_times", 1):
        out({"status": "error", "error": f"transient failure {n + 1}"})
    out({"status": "ok", "result": f"succeeded after {n} failures"})
if mode == "sleep":
    time.sleep(float(payload.get("seconds", 5)))
    out({"status": "ok", "result": "slept"})
if mode == "stubborn":
    # Ignores SIGTERM and leaves a child that ignores it too; writes the child's pid.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 120"])
    with open(payload["pidfile"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(120)
if mode == "state_bump":
    count = int(request.get("state", {}).get("count", 0)) + 1
    out({"status": "ok", "result": f"count {count}", "state_updates": {"count": count}})
if mode == "bad_state":
    out({"status": "ok", "result": "x", "state_updates": [1, 2]})
if mode == "event_without_type":
    out({"status": "ok", "result": "x", "state_updates": {"applied": True}, "events": [{"payload": {}}]})
if mode == "huge_state":
    out({"status": "ok", "result": "x", "state_updates": {"blob": "y" * 1_100_000}})
out({"status": "error", "error": f"unknown mode {mode}", "retry": False})
