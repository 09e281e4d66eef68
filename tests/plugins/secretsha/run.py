#!/usr/bin/env python3
import hashlib
import json
import sys

request = json.load(sys.stdin)
secrets = request.get("secrets") or {}
value = secrets.get("smtp_pw", "")
digest = hashlib.sha256(value.encode()).hexdigest() if value else "-"
# The summary carries the value itself too: the gateway must redact it before storing anything.
print(json.dumps({"status": "ok", "result": f"names={','.join(sorted(secrets))} sha256={digest} echo={value}"}))
