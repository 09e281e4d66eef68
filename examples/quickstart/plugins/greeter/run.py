#!/usr/bin/env python3
"""Greeter: a minimal protocol-2 plugin. Reads one request on stdin, writes one response."""
import json
import sys

request = json.load(sys.stdin)
config = request.get("config", {})
state = request.get("state", {})
if request["command"] == "handle":
    name = request.get("event", {}).get("payload", {}).get("name", "world")
else:
    name = request.get("payload", {}).get("name", "world")
count = int(state.get("greetings", 0)) + 1
message = f"{config.get('greeting', 'Hello')}, {name}!"
json.dump(
    {
        "status": "ok",
        "result": message,
        "state_updates": {"greetings": count, "last_name": name},
        "events": [{"type": "greeter.greeted", "payload": {"name": name, "count": count}}],
        "logs": [{"level": "info", "message": f"greeting #{count}"}],
    },
    sys.stdout,
)
