#!/usr/bin/env python3
"""Protocol 2: the request's `secrets` map holds exactly the secrets granted to this plugin."""
import json
import sys

request = json.load(sys.stdin)
names = sorted(request.get("secrets") or {})
print(json.dumps({"status": "ok", "result": "received secrets: " + (", ".join(names) or "none")}))
