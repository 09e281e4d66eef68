#!/usr/bin/env python3
import json
import sys
import time

request = json.loads(sys.stdin.read())
log = request["config"]["log"]
start = time.time()
time.sleep(float(request.get("payload", {}).get("seconds", 0.3)))
with open(log, "a") as f:
    f.write(f"{start} {time.time()}\n")
print(json.dumps({"status": "ok", "result": "done"}))
