#!/bin/sh
# Answers every command the same way; what matters is that the plugin loads and runs.
cat >/dev/null
echo '{"status":"ok","result":"sysexec ran","events":[{"type":"sysexec.done","payload":{"ok":true}}]}'
