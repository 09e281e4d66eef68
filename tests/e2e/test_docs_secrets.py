"""docs/secrets.md, run as written (STYLE.md: every runnable example in the docs is run by a test).

The page runs as ``tests/e2e/doc_pages.py`` reads it, in a scratch directory that holds a copy of
examples/secrets (only ``api.listen`` moved to a free port). The secret's value enters only
through the environment variable the page names, and is then looked for where it must never be.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.doc_pages import Reader, shell_env, steps
from tests.integration.daemon import REPO, Daemon, free_port

PAGE = REPO / "docs" / "secrets.md"
EXAMPLE = REPO / "examples" / "secrets"
CANARY = f"CANARY-{uuid.uuid4()}"


def test_the_page_only_takes_values_on_stdin() -> None:
    for step in steps(PAGE):
        if " vault set " in step.command and "--pattern auto" not in step.command:
            assert step.command.startswith("printf '%s' \"$SMTP_PASSWORD\" | "), step.command
        assert "--value" not in step.command


def test_docs_secrets_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    monkeypatch.delenv("DUCTILE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("DUCTILE_VAULT_TOKEN", raising=False)
    monkeypatch.delenv("DUCTILE_API_KEY", raising=False)

    # The default management socket lives under the work dir, and pytest's own temp paths (longer
    # still under xdist) can outgrow what a unix socket path holds: work in a short one.
    work = Path(tempfile.mkdtemp(prefix="dd-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    shutil.copytree(EXAMPLE, work / "examples" / "secrets", ignore=shutil.ignore_patterns("data"))
    config_file = work / "examples" / "secrets" / "config.yaml"
    original = config_file.read_text()
    listen = yaml.safe_load(original)["api"]["listen"]
    port = free_port()
    config_file.write_text(original.replace(f"listen: {listen}\n", f"listen: 127.0.0.1:{port}\n"))
    assert {k: v for k, v in yaml.safe_load(config_file.read_text()).items() if k != "api"} == \
        {k: v for k, v in yaml.safe_load(original).items() if k != "api"}
    token = yaml.safe_load(original)["api"]["auth"]["tokens"][0]["token"]

    # The operator's shell has the value; the gateway's environment never does.
    env = shell_env(tmp_path, SMTP_PASSWORD=CANARY)
    gateway = work / "my-gateway"
    reader = Reader(work, env, tmp_path / "shell-env", gateway=lambda: Daemon.for_config_dir(gateway, port, token))
    daemons = reader.run(PAGE)

    assert len(daemons) == 2, "the page starts the gateway, stops it, and starts it again"
    assert CANARY.encode() not in (work / "my-gateway" / "vault.age").read_bytes()  # encrypted
    for path in (gateway / "data").iterdir():
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in daemons[0].log_text() + daemons[1].log_text()
