#!/usr/bin/env python3
"""Test plugin: payload.mode picks a behaviour that once wedged or misled the job engine (the
malformed-output corpus is ``misbehave``).

- ``blank_result``: ok with ``result`` "  ".
- ``slow_big``: sleeps ``payload.seconds``, then answers ok with a 300 kB state update.
- ``stopwatch``: ok with ``ductile_stopwatch_subs`` taken from ``payload.subs``.
"""
import json
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


if mode == "blank_result":
    out({"status": "ok", "result": "  "})
elif mode == "slow_big":
    time.sleep(float(payload.get("seconds", 0.5)))
    out({"status": "ok", "result": "big state", "state_updates": {"blob": "b" * 300_000}})
elif mode == "stopwatch":
    out({"status": "ok", "result": "timed", "ductile_stopwatch_subs": payload.get("subs", [])})
else:
    out({"status": "error", "error": f"unknown mode {mode}", "retry": False})
