#!/bin/sh
# Read the whole request from stdin (one JSON document), answer with one JSON document.
request=$(cat)
bytes=$(printf '%s' "$request" | wc -c | tr -d ' ')
printf '{"status":"ok","result":"echo: received %s bytes","logs":[{"level":"info","message":"echo ran"}]}\n' "$bytes"
