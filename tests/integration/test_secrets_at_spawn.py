"""Secrets at spawn with the real daemon (vault.md §10): a plugin that requires the vault, with no
vault loaded, fails closed before its process starts, and the denial is audited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.daemon import Daemon

NO_VAULT = "vault: plugin requires vault secrets but no vault is loaded"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("secrets-at-spawn")
    d = Daemon(root / "gw", {
        "behave": {"enabled": True, "requires_vault": True, "vault_principal": "mailer", "retry": {"max_attempts": 3}},
        "catlike": {"enabled": True},
    })
    d.start()
    yield d
    d.close()


def test_a_plugin_requiring_the_vault_fails_closed_without_a_retry_when_none_is_loaded(gw: Daemon) -> None:
    job_id = gw.trigger("behave", payload={"mode": "ok"})
    job = gw.wait_job(job_id)
    assert (job["status"], job["attempt"], job["last_error"]) == ("failed", 1, NO_VAULT)
    rows = gw.table("vault_audit", "position")
    assert [(r[2], r[3]) for r in rows if f"job_id={job_id}" in str(r)] == [("compose_denial", "mailer")]
    assert "plugin secrets denied; job failed closed" in gw.log_text()


def test_a_plugin_the_vault_does_not_concern_still_runs(gw: Daemon) -> None:
    job = gw.wait_job(gw.trigger("catlike"))
    assert job["status"] == "succeeded"
