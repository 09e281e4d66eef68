#!/usr/bin/env python3
"""One line per run, appended before the answer: the side effect the soak checks ran at least once."""
import json
import os
import sys

request = json.loads(sys.stdin.read())
payload = request.get("payload") or {}
if request["command"] == "handle":
    payload = request.get("event", {}).get("payload", {})
fd = os.open(request["config"]["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.write(fd, (request["job_id"] + "\n").encode())  # one write under O_APPEND: lines never interleave
os.close(fd)
events = [{"type": "soak.item", "payload": {"i": i}} for i in range(int(payload.get("fan", 0)))]
sys.stdout.write(json.dumps({"status": "ok", "result": "done", "events": events}))
