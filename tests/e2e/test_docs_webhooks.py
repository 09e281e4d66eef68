"""docs/webhooks.md's `sh` block, run as written through bash against the real daemon: a gateway
configured as the page's section 1 shows (only the listener's port moved to a free one, the plugin
a real test plugin), the secret only in ``$WEBHOOK_SECRET`` and the vault. The ``# `` lines under a
command are its output (``…`` matches anything)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.doc_pages import steps
from tests.integration.daemon import REPO, Daemon, free_port, seed_vault, wait_until

PAGE = REPO / "docs" / "webhooks.md"
PATH = "/webhook/astro-rebuild-staging"


def block() -> tuple[str, list[str]]:
    """The page's commands, as ``tests/e2e/doc_pages.py`` reads them, and the expected output lines, in order.

    They run as one script here: the signature's shell variables (not exported) carry from line to line."""
    page = steps(PAGE)
    return "\n".join(s.command for s in page), [line for s in page for line in s.output]


def test_the_pages_curl_and_openssl_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    secret = f"CANARY-{uuid.uuid4()}"
    root = tmp_path / "gw"
    root.mkdir()
    seed_vault(root, {"astro_webhook_secret": secret})
    port = free_port()
    gw = Daemon(root, plugins={"hookrecv": {"enabled": True}})
    gw.config["webhooks"] = {"listen": f"127.0.0.1:{port}", "endpoints": [{
        "name": "astro_rebuild_staging", "path": PATH, "plugin": "hookrecv", "secret_ref": "astro_webhook_secret",
        "signature_header": "X-Hub-Signature-256", "event_type": "site.rebuild_requested",
        "timestamp_header": "X-Ductile-Timestamp", "timestamp_tolerance": "5m"}]}
    gw.write_config()
    try:
        gw.start()
        commands, expected = block()
        script = "set -e\n" + commands.replace("127.0.0.1:8091", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "WEBHOOK_SECRET": secret})
        assert done.returncode == 0, done.stderr
        # curl -sS prints no newline after a body: split the answers on the JSON objects.
        answers = re.findall(r"\{[^{}]*\}", done.stdout)
        patterns = [re.escape(line).replace("…", "[^\"]+") for line in expected]
        assert len(answers) == len(patterns) and all(
            re.fullmatch(p, a) for p, a in zip(patterns, answers, strict=True)), (answers, expected)
        job_id = answers[0].split('"')[3]
        wait_until(lambda: gw.job(job_id)["status"] == "succeeded", 30, what="the webhook's job")
        assert secret not in gw.log_text()
    finally:
        gw.close()
