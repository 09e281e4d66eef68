"""Secrets at spawn through the real dispatcher (vault.md §9–§10): the request ``secrets`` map,
fail-closed jobs, audit records, the SSE event, fingerprint re-verification and redaction.

The real ``Dispatcher``, ``EventLog``, projections and ``.checksums`` file in a temp dir; the vault
source is a small holder of a real ``VaultDocument`` (what the daemon's keeper hands out), and the
plugin process is played by ``FakePlugin``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from ductile.app import jobs
from ductile.commands.jobs import EnqueueJob
from ductile.config.checksums import Checksums, PluginFingerprintEntry, write_checksums
from ductile.config.discovery import ConfigSource
from ductile.config.loader import load_config
from ductile.events.log import EventLog, read_stream
from ductile.events.sqlite_store import connect_async
from ductile.events.types import VAULT_AUDIT_STREAM, JobFailed
from ductile.projections.audit import AuditQuery, fetch_query
from ductile.projections.registry import default_runner
from ductile.runtime.catalog import load_catalog
from ductile.runtime.dispatcher import Dispatcher
from ductile.runtime.observations import frames
from ductile.runtime.process import ProcessResult
from ductile.vault.document import CORE, Principal, Secret, VaultDocument
from ductile.vault.fingerprint import FingerprintKey, plugin_fingerprint
from ductile.vault.mint import nonce
from ductile.vocabulary import PrincipalKind, PrincipalStatus, SecretStatus
from tests.unit.runtime.test_dispatcher import TEST_PLUGINS, FakePlugin, Rig

pytestmark = pytest.mark.anyio

SMTP = "CANARY-" + uuid.uuid4().hex
NONCE = nonce()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HeldVault:
    """The dispatcher's vault source: the document the keeper currently holds."""

    def __init__(self, doc: VaultDocument | None) -> None:
        self.doc = doc

    def document(self) -> VaultDocument | None:
        return self.doc


def document(*, principal: PrincipalStatus | None = PrincipalStatus.ACTIVE, value: str = SMTP,
             status: SecretStatus = SecretStatus.ACTIVE) -> VaultDocument:
    principals = {CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=NONCE)}
    if principal is not None:
        principals["mailer"] = Principal(kind=PrincipalKind.PLUGIN, status=principal)
    return VaultDocument(principals=principals, secrets={
        "smtp_pw": Secret(value=value, status=status, authorized_principals=("mailer",)),
    })


def attest(config_dir: Path, name: str = "behave") -> None:
    """What `plugin lock behave` records, computed with the vault's nonce."""
    manifest, entrypoint = TEST_PLUGINS / "behave" / "manifest.yaml", TEST_PLUGINS / "behave" / "run.py"
    fp = plugin_fingerprint(manifest, entrypoint, FingerprintKey.from_nonce(NONCE))
    write_checksums(config_dir, Checksums(generated_at="2026-11-27T10:00:00Z", plugin_fingerprints=(
        PluginFingerprintEntry(name=name, manifest_path=str(manifest), manifest_resolved_path=str(manifest.resolve()),
                               manifest_hash=fp.manifest, entrypoint_path=str(entrypoint),
                               entrypoint_resolved_path=str(entrypoint.resolve()), entrypoint_hash=fp.entrypoint),
    )))


class SecretsRig(Rig):
    async def run_one(self) -> tuple[str, dict[str, Any]]:
        cmd = EnqueueJob(job_id=str(uuid.uuid4()), plugin="behave", command="poll", payload={},
                         submitted_by="test", max_attempts=3)
        job_id = (await self.events.submit(lambda tx: jobs.enqueue(tx, cmd))).job_id
        return job_id, await self.ended(job_id, "succeeded", "failed")

    async def failed_reason(self, job_id: str) -> str:
        [failed] = [e for e in await self.stream(job_id) if isinstance(e, JobFailed)]
        return failed.reason

    async def audit(self) -> list[tuple[str, str | None, str | None, str | None]]:
        async with connect_async(self.events.path) as conn:
            page = await fetch_query(conn, AuditQuery())
        return [(r.op, r.principal, r.secret_name, r.detail) for r in reversed(page.rows)]


Factory = Callable[..., Awaitable[SecretsRig]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[tuple[EventLog, Dispatcher, asyncio.Task[None]]] = []

    async def factory(fake: FakePlugin, vault: HeldVault, *, requires_vault: bool = False, attested: bool = True) -> SecretsRig:
        config_dir = tmp_path / "config"
        config_dir.mkdir()
        (config_dir / "config.yaml").write_text(yaml.safe_dump({
            "state": {"path": "data/ductile.db"}, "plugin_roots": [str(TEST_PLUGINS)],
            "plugins": {"behave": {"enabled": True, "vault_principal": "mailer", "requires_vault": requires_vault}},
        }))
        if attested:
            attest(config_dir)
        config = load_config(ConfigSource(root_file=config_dir / "config.yaml", config_dir=config_dir, source="explicit"))
        events = await EventLog(config.state_path, "full", default_runner()).open()
        dispatcher = Dispatcher(events, load_catalog(config), max_workers=1, env_passthrough=[],
                                state_dir=config.state_path.parent, run=fake, vault=vault)
        started.append((events, dispatcher, asyncio.create_task(dispatcher.run())))
        return SecretsRig(events, dispatcher)

    yield factory
    for events, dispatcher, task in started:
        await dispatcher.stop(5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()


async def test_an_attested_plugin_receives_its_secrets_and_the_delivery_is_audited(make: Factory) -> None:
    fake = FakePlugin()
    rig = await make(fake, HeldVault(document()))
    job_id, job = await rig.run_one()
    assert job["status"] == "succeeded"
    assert fake.requests[0]["secrets"] == {"smtp_pw": SMTP}
    assert await rig.audit() == [("deliver", "mailer", "smtp_pw", f"job_id={job_id}")]


async def test_a_roll_reaches_the_next_spawn_without_a_reload(make: Factory) -> None:
    fake = FakePlugin()
    vault = HeldVault(document())
    rig = await make(fake, vault)
    await rig.run_one()
    vault.doc = document(value="rolled-" + SMTP)
    await rig.run_one()
    assert [r["secrets"]["smtp_pw"] for r in fake.requests] == [SMTP, "rolled-" + SMTP]


@pytest.mark.parametrize(("vault", "requires_vault", "error", "reason"), [
    (None, True, "vault: plugin requires vault secrets but no vault is loaded", "no_vault"),
    (document(principal=None), True,
     'vault: plugin requires vault secrets but its principal "mailer" is not registered', "principal_not_registered"),
    (document(principal=PrincipalStatus.REVOKED), False, 'vault: principal "mailer" is not active',
     "principal_not_active"),
])
async def test_a_denied_composition_fails_the_job_closed_without_a_spawn_or_a_retry(
    make: Factory, vault: VaultDocument | None, requires_vault: bool, error: str, reason: str
) -> None:
    fake = FakePlugin()
    rig = await make(fake, HeldVault(vault), requires_vault=requires_vault)
    job_id, job = await rig.run_one()
    assert (job["status"], job["attempt"], job["last_error"]) == ("failed", 1, error)
    assert fake.requests == []
    assert await rig.failed_reason(job_id) == "secrets_denied"
    assert await rig.audit() == [("compose_denial", "mailer", None, f"reason={reason} job_id={job_id}")]


async def test_a_plugin_the_vault_does_not_concern_runs_without_secrets_or_audit(make: Factory) -> None:
    fake = FakePlugin()
    rig = await make(fake, HeldVault(document(principal=None)), attested=False)
    _, job = await rig.run_one()
    assert job["status"] == "succeeded"
    assert "secrets" not in fake.requests[0]
    assert await rig.audit() == []


async def test_an_unattested_plugin_fails_closed_with_a_security_alert_and_an_sse_event(make: Factory) -> None:
    fake = FakePlugin()
    rig = await make(fake, HeldVault(document()), attested=False)
    job_id, job = await rig.run_one()
    detail = "plugin \"behave\" has no recorded fingerprint; run 'ductile plugin lock behave' and reload"
    assert (job["status"], job["attempt"], job["last_error"]) == ("failed", 1, f"fingerprint_mismatch: {detail}")
    assert fake.requests == []
    assert await rig.failed_reason(job_id) == "fingerprint_mismatch"
    assert await rig.audit() == [("fingerprint_mismatch", "mailer", None, f"plugin=behave job_id={job_id} {detail}")]
    conn = rig.events.reader()
    try:
        sse = [f for rec in read_stream(conn, VAULT_AUDIT_STREAM) for f in frames(rec)]
    finally:
        conn.close()
    assert [(kind, {k: v for k, v in frame.items() if k != "at"}) for kind, frame in sse] == [
        ("plugin.fingerprint_mismatch", {"plugin": "behave", "job_id": job_id, "detail": detail})]


async def test_a_fingerprint_recorded_with_another_nonce_is_a_mismatch(make: Factory) -> None:
    fake = FakePlugin()
    other = document()
    other = msgspec.structs.replace(other, principals={**other.principals,
                                                       CORE: Principal(kind=PrincipalKind.GATEWAY, nonce=nonce())})
    rig = await make(fake, HeldVault(other))
    _, job = await rig.run_one()
    entry = TEST_PLUGINS / "behave" / "run.py"
    assert job["last_error"] == f'fingerprint_mismatch: plugin "behave" entrypoint does not match its recorded fingerprint ({entry})'
    assert fake.requests == []


async def test_revoked_and_valueless_grants_are_denied_and_the_job_still_runs(make: Factory) -> None:
    fake = FakePlugin()
    rig = await make(fake, HeldVault(document(status=SecretStatus.REVOKED, value="")))
    job_id, job = await rig.run_one()
    assert job["status"] == "succeeded"
    assert "secrets" not in fake.requests[0]
    assert await rig.audit() == [("deny", "mailer", "smtp_pw", f"reason=secret_revoked job_id={job_id}")]


async def test_a_delivered_value_is_redacted_from_what_the_plugin_wrote_back(make: Factory) -> None:
    body = msgspec.json.encode({"status": "error", "error": f"login {SMTP} refused", "retry": False,
                                "logs": [{"level": "info", "message": f"using {SMTP}"}]})
    fake = FakePlugin(ProcessResult(stdout=body, stderr=f"debug: {SMTP}", exit_code=1, duration_ms=2))
    rig = await make(fake, HeldVault(document()))
    _, job = await rig.run_one()
    assert job["status"] == "failed"
    assert job["last_error"] == "login [REDACTED:smtp_pw] refused"
    stored = msgspec.json.encode(job).decode()
    assert SMTP not in stored and "[REDACTED:smtp_pw]" in stored
    assert SMTP.encode() not in Path(rig.events.path).read_bytes()
