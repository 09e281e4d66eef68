#!/usr/bin/env python3
"""Test plugin: payload.mode picks a behaviour that once wedged or misled the job engine.

- ``sleepers``: forks ``payload.count`` background sleepers (stdio detached), writes their pids to
  ``payload.pidfile``, answers ok and exits.
- ``holds_stdout``: answers ok and exits 0, leaving a background sleeper that still holds stdout;
  its pid goes to ``payload.pidfile``.
- ``huge_int_state`` / ``huge_int_event``: an integer of 2**70 in ``state_updates`` / an emitted
  event's payload.
- ``blank_result``: ok with ``result`` "  ".
- ``slow_big``: sleeps ``payload.seconds``, then answers ok with a 300 kB state update.
- ``stopwatch``: ok with ``ductile_stopwatch_subs`` taken from ``payload.subs``.
"""
import json
import subprocess
import sys
import time

request = json.loads(sys.stdin.read())
payload = request.get("payload") or {}
if request["command"] == "handle":
    payload = request.get("event", {}).get("payload", {})
mode = payload.get("mode")


def out(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj))
    sys.stdout.flush()


if mode == "sleepers":
    devnull = subprocess.DEVNULL
    pids = [subprocess.Popen(["sleep", "60"], stdin=devnull, stdout=devnull, stderr=devnull).pid
            for _ in range(int(payload.get("count", 20)))]
    with open(payload["pidfile"], "w") as f:
        f.write(" ".join(map(str, pids)))
    out({"status": "ok", "result": f"forked {len(pids)}"})
elif mode == "holds_stdout":
    out({"status": "ok", "result": "answered"})
    child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)  # inherits stdout and stderr
    with open(payload["pidfile"], "w") as f:
        f.write(str(child.pid))
elif mode == "huge_int_state":
    out({"status": "ok", "result": "big", "state_updates": {"big": 2**70}})
elif mode == "huge_int_event":
    out({"status": "ok", "result": "big", "events": [{"type": "big.number", "payload": {"n": -(2**70)}}]})
elif mode == "blank_result":
    out({"status": "ok", "result": "  "})
elif mode == "slow_big":
    time.sleep(float(payload.get("seconds", 0.5)))
    out({"status": "ok", "result": "big state", "state_updates": {"blob": "b" * 300_000}})
elif mode == "stopwatch":
    out({"status": "ok", "result": "timed", "ductile_stopwatch_subs": payload.get("subs", [])})
else:
    out({"status": "error", "error": f"unknown mode {mode}", "retry": False})
