#!/usr/bin/env python3
import json
import sys

request = json.load(sys.stdin)
seen = {key: request.get(key) for key in ("command", "payload", "event", "context")}
print(json.dumps({"status": "ok", "result": json.dumps(seen, sort_keys=True)}))
