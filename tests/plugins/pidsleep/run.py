#!/usr/bin/env python3
"""Test plugin: starts ``sleep`` in its own process group, writes "<pid> <child pid>" to a new file
``<payload.piddir>/<pid>``, then waits for the child. SIGTERM ends both promptly."""
import json
import os
import subprocess
import sys

request = json.loads(sys.stdin.read())
payload = request.get("payload") or {}
child = subprocess.Popen(["sleep", str(payload.get("seconds", 60))])
path = os.path.join(payload["piddir"], str(os.getpid()))
with open(path + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(path + ".tmp", path)
child.wait()
sys.stdout.write(json.dumps({"status": "ok", "result": "slept"}))
