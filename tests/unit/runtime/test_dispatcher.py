"""The dispatcher with a fake process runner (issue 10 item 8: tests where the code is hardest).

The real ``Dispatcher``, ``EventLog`` and projections in a temp dir; only the plugin process is
played by ``FakePlugin``, passed through the dispatcher's ``run`` seam. Each test reads the job
back from the projection the way the API would, so what is pinned is what a user sees.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from ductile.app import jobs
from ductile.commands.jobs import EnqueueJob, KillJob
from ductile.config.discovery import ConfigSource
from ductile.config.loader import load_config
from ductile.events.log import EventLog, read_stream
from ductile.events.sqlite_store import connect_async
from ductile.events.types import JobRetryScheduled, JobStarted, job_stream
from ductile.projections.job_queries import get_job
from ductile.projections.registry import default_runner
from ductile.runtime import dispatcher as dispatcher_module
from ductile.runtime.catalog import load_catalog
from ductile.runtime.dispatcher import Dispatcher
from ductile.runtime.process import ProcessResult
from tests.polling import until

TEST_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
BACKOFF_BASE = 0.2  # seconds: a retry falls due within a test's patience
POLL_TIMEOUT = 7.0
FAKE_PID = 4_300_000  # above Linux's pid_max: a stray signal to it could reach nobody

pytestmark = pytest.mark.anyio

Answer = ProcessResult | Callable[[int], ProcessResult]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ok(result: str = "done", **extra: Any) -> ProcessResult:
    body = msgspec.json.encode({"status": "ok", "result": result, **extra})
    return ProcessResult(stdout=body, stderr="", exit_code=0, duration_ms=3)


def error(message: str, retry: bool = True) -> ProcessResult:
    body = msgspec.json.encode({"status": "error", "error": message, "retry": retry})
    return ProcessResult(stdout=body, stderr="it broke", exit_code=1, duration_ms=4)


class FakePlugin:
    """Plays the plugin process: each spawn takes the next scripted answer (``ok()`` once they run out)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.timeouts: list[float] = []
        self._lock = threading.Lock()

    def __call__(
        self, argv: list[str], stdin: bytes, env: dict[str, str], timeout: float, cwd: str | None,
        on_spawn: Callable[[int], None],
    ) -> ProcessResult:
        with self._lock:
            self.requests.append(msgspec.json.decode(stdin))
            self.timeouts.append(timeout)
            answer = self.answers.pop(0) if self.answers else ok()
            pid = FAKE_PID + len(self.requests)
        on_spawn(pid)
        return answer(pid) if callable(answer) else answer


class Rig:
    def __init__(self, events: EventLog, dispatcher: Dispatcher) -> None:
        self.events = events
        self.dispatcher = dispatcher

    async def enqueue(self, max_attempts: int = 1, payload: dict[str, Any] | None = None) -> str:
        cmd = EnqueueJob(job_id=str(uuid.uuid4()), plugin="behave", command="poll", payload=payload or {},
                         submitted_by="test", max_attempts=max_attempts)
        return (await self.events.submit(lambda tx: jobs.enqueue(tx, cmd))).job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        async with connect_async(self.events.path) as conn:
            job = await get_job(conn, job_id)
        assert job is not None
        return job

    async def stream(self, job_id: str) -> list[Any]:
        conn = self.events.reader()
        try:
            return [r.event for r in read_stream(conn, job_stream(job_id))]
        finally:
            conn.close()

    async def until(self, what: str, check: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
        return await until(what, check, timeout)

    async def ended(self, job_id: str, *statuses: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["status"] in statuses else None

        return await self.until(f"job {job_id} to end as {statuses}", check)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[RigFactory]:
    started: list[tuple[EventLog, Dispatcher, asyncio.Task[None]]] = []

    async def make(fake: FakePlugin, *, max_workers: int = 1, router: Any = None) -> Rig:
        config_dir = tmp_path / "config"
        config_dir.mkdir()
        (config_dir / "config.yaml").write_text(yaml.safe_dump({
            "service": {"max_workers": max_workers},
            "state": {"path": "data/ductile.db"},
            "plugin_roots": [str(TEST_PLUGINS)],
            "plugins": {"behave": {"enabled": True, "retry": {"backoff_base": f"{int(BACKOFF_BASE * 1000)}ms"},
                                   "timeouts": {"poll": f"{int(POLL_TIMEOUT)}s"}}},
        }))
        config = load_config(ConfigSource(root_file=config_dir / "config.yaml", config_dir=config_dir,
                                          source="explicit"))
        events = await EventLog(config.state_path, "full", default_runner()).open()
        dispatcher = Dispatcher(events, load_catalog(config), max_workers=max_workers, env_passthrough=[],
                                state_dir=config.state_path.parent, router=router, run=fake)
        started.append((events, dispatcher, asyncio.create_task(dispatcher.run())))
        return Rig(events, dispatcher)

    yield make
    for events, dispatcher, task in started:
        await dispatcher.stop(5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()


async def test_a_successful_attempt_stores_the_result_and_the_request_follows_protocol_2(make_rig: RigFactory) -> None:
    fake = FakePlugin(ok("all good"))
    rig = await make_rig(fake)
    job_id = await rig.enqueue(payload={"mode": "x"})
    job = await rig.ended(job_id, "succeeded")
    assert (job["attempt"], job["result"]) == (1, {"status": "ok", "result": "all good"})
    [request] = fake.requests
    assert (request["protocol"], request["job_id"], request["command"]) == (2, job_id, "poll")
    assert request["payload"] == {"mode": "x"}
    assert fake.timeouts == [POLL_TIMEOUT]  # the configured per-command timeout reaches the runner
    assert rig.dispatcher.procs.recorded() == {}  # the pid record went with the process


async def test_a_retryable_error_is_retried_after_the_backoff_then_succeeds(make_rig: RigFactory) -> None:
    fake = FakePlugin(error("flaky upstream"), ok("second time lucky"))
    rig = await make_rig(fake)
    job_id = await rig.enqueue(max_attempts=3)
    job = await rig.ended(job_id, "succeeded")
    assert (job["attempt"], job["result"]) == (2, {"status": "ok", "result": "second time lucky"})
    [retry] = [e for e in await rig.stream(job_id) if isinstance(e, JobRetryScheduled)]
    base_ms = int(BACKOFF_BASE * 1000)
    # jobs.md: min(base·2^(n-1), 100·base) + U[0, base/4]; for the first failure, base plus jitter.
    assert base_ms <= retry.backoff_ms <= base_ms * 5 // 4
    assert retry.backoff_base_ms == base_ms and retry.error == "flaky upstream"
    assert 0 <= retry.next_retry_at - retry.at - retry.backoff_ms * 1_000_000 < 1_000_000  # backoff_ms truncates
    # The second spawn waited for the retry to fall due.
    started = [e for e in await rig.stream(job_id) if isinstance(e, JobStarted)]
    assert [e.attempt for e in started] == [1, 2] and len(fake.requests) == 2
    assert started[1].at >= retry.next_retry_at


async def test_a_plugin_that_says_retry_false_fails_at_once(make_rig: RigFactory) -> None:
    fake = FakePlugin(error("bad credentials", retry=False))
    rig = await make_rig(fake)
    job_id = await rig.enqueue(max_attempts=3)
    job = await rig.ended(job_id, "failed")
    assert (job["attempt"], job["last_error"]) == (1, "bad credentials")
    assert len(fake.requests) == 1


async def test_a_timeout_ends_the_job_timed_out_with_the_configured_limit_in_the_error(make_rig: RigFactory) -> None:
    fake = FakePlugin(ProcessResult(stdout=b"", stderr="", exit_code=None, duration_ms=7000, timed_out=True))
    rig = await make_rig(fake)
    job_id = await rig.enqueue()
    job = await rig.ended(job_id, "timed_out")
    assert job["last_error"] == "plugin execution timed out after 7s"


async def test_a_protocol_error_is_a_retryable_spawn_error_with_the_reason(make_rig: RigFactory) -> None:
    not_json = ProcessResult(stdout=b"hello, I am not JSON", stderr="", exit_code=0, duration_ms=1)
    fake = FakePlugin(not_json, ok())
    rig = await make_rig(fake)
    job_id = await rig.enqueue(max_attempts=2)
    job = await rig.ended(job_id, "succeeded")
    assert job["attempt"] == 2
    [retry] = [e for e in await rig.stream(job_id) if isinstance(e, JobRetryScheduled)]
    assert retry.error == "plugin spawn failed: decode response: plugin output is not valid JSON"


async def test_a_protocol_error_on_the_last_attempt_fails_the_job(make_rig: RigFactory) -> None:
    fake = FakePlugin(ProcessResult(stdout=b"[1, 2]", stderr="", exit_code=0, duration_ms=1))
    rig = await make_rig(fake)
    job_id = await rig.enqueue(max_attempts=1)
    job = await rig.ended(job_id, "failed")
    # The job's error is the protocol's fixed text, whatever the parse detail.
    assert job["last_error"] == "plugin spawn failed: decode response: plugin output is not valid JSON"


async def test_cancel_while_running_kills_the_process_group_discards_the_result_and_frees_the_slot(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = threading.Event()
    killed: list[int] = []
    release = threading.Event()

    def fake_kill_group(pid: int, *_: Any, **__: Any) -> None:
        killed.append(pid)
        release.set()

    def runs_until_killed(pid: int) -> ProcessResult:
        spawned.set()
        assert release.wait(10), "the dispatcher never killed the cancelled job's process"
        return ProcessResult(stdout=b"", stderr="", exit_code=-15, duration_ms=50, pid=pid)

    monkeypatch.setattr(dispatcher_module, "kill_group", fake_kill_group)
    fake = FakePlugin(runs_until_killed, ok("next one"))
    rig = await make_rig(fake)
    job_id = await rig.enqueue(max_attempts=3)
    await rig.until("the plugin to be spawned", lambda: asyncio.sleep(0, spawned.is_set()))
    await rig.events.submit(lambda tx: jobs.apply(tx, KillJob(job_id=job_id, reason="cancelled by user",
                                                                    error="cancelled")))
    job = await rig.ended(job_id, "dead")
    await rig.until("the kill", lambda: asyncio.sleep(0, bool(killed)))
    assert killed == [FAKE_PID + 1]
    # The killed attempt's result is refused (the job is dead), never recorded as a retry.
    await rig.until("the slot to free", lambda: asyncio.sleep(0, rig.dispatcher.running == 0))
    assert (await rig.job(job_id))["status"] == "dead"
    assert not [e for e in await rig.stream(job_id) if isinstance(e, JobRetryScheduled)]
    assert job["last_error"] == "cancelled"
    # With max_workers=1, the next job runs only if the slot was freed.
    nxt = await rig.enqueue()
    assert (await rig.ended(nxt, "succeeded"))["result"] == {"status": "ok", "result": "next one"}


class ExplodingRouter:
    """A router whose success routing raises: the completion's transaction fails."""

    pipelines: dict[str, Any] = {}

    def __init__(self) -> None:
        self.calls = 0

    def after_success(self, *_: Any) -> list[Any]:
        self.calls += 1
        raise RuntimeError("routing blew up")

    def after_terminal(self, *_: Any) -> list[Any]:
        return []


async def test_a_completion_that_cannot_be_recorded_fails_the_job_and_frees_the_slot(make_rig: RigFactory) -> None:
    router = ExplodingRouter()
    fake = FakePlugin(ok("lost"), ok("also routed"))
    rig = await make_rig(fake, router=router)
    job_id = await rig.enqueue(max_attempts=3)
    job = await rig.ended(job_id, "failed")
    assert job["last_error"] == "internal error: the result could not be recorded: RuntimeError: routing blew up"
    assert job["attempt"] == 1  # a fault of ours is permanent, not retried
    # Success routing ran once: the failure recorded in its place routes as a failure (hooks only).
    assert router.calls == 1
    await rig.until("the slot to free", lambda: asyncio.sleep(0, rig.dispatcher.running == 0))
    nxt = await rig.enqueue()
    assert (await rig.ended(nxt, "failed"))["last_error"].startswith("internal error")
    assert len(fake.requests) == 2  # the freed slot claimed and ran the next job


async def test_a_swap_applies_a_new_max_workers_and_env_passthrough_to_the_next_spawns(
    make_rig: RigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload's service.max_workers and plugin_env_passthrough reach the spawns after the swap,
    while the job already running keeps its slot."""
    release = threading.Event()
    envs: list[dict[str, str]] = []

    def held(pid: int) -> ProcessResult:
        assert release.wait(10), "never released"
        return ok("held")

    class Recording(FakePlugin):
        def __call__(self, argv: list[str], stdin: bytes, env: dict[str, str], timeout: float, cwd: str | None,
                     on_spawn: Callable[[int], None]) -> ProcessResult:
            envs.append(env)
            return super().__call__(argv, stdin, env, timeout, cwd, on_spawn)

    monkeypatch.setenv("DUCTILE_TEST_PASSED_ON", "yes")
    rig = await make_rig(Recording(held, ok("second")))
    first = await rig.enqueue()
    await rig.until("the first spawn", lambda: asyncio.sleep(0, len(envs) == 1))
    second = await rig.enqueue()
    await asyncio.sleep(0.3)
    assert len(envs) == 1, "max_workers 1 must hold the second job back"

    (tmp_path / "config" / "config.yaml").write_text(
        (tmp_path / "config" / "config.yaml").read_text().replace("max_workers: 1", "max_workers: 2"))
    config = load_config(ConfigSource(root_file=tmp_path / "config" / "config.yaml", config_dir=tmp_path / "config",
                                      source="explicit"))
    rig.dispatcher.swap(load_catalog(config), None, max_workers=2, env_passthrough=["DUCTILE_TEST_PASSED_ON"])
    assert (await rig.ended(second, "succeeded"))["result"] == {"status": "ok", "result": "second"}
    assert (await rig.job(first))["status"] == "running"  # undisturbed by the swap
    assert "DUCTILE_TEST_PASSED_ON" not in envs[0] and envs[1]["DUCTILE_TEST_PASSED_ON"] == "yes"
    release.set()
    await rig.ended(first, "succeeded")


async def test_a_job_enqueued_as_the_only_slot_turns_over_runs_without_waiting_for_the_tick(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claiming loop is woken only when a slot is free. A job enqueued while the one slot is
    busy (or just ending) must still run at once: by the slot's own claim, or by the wake-up the
    ending slot gives. With the safety tick an hour away, a lost wake-up would strand it."""
    monkeypatch.setattr(dispatcher_module, "TICK_SECONDS", 3600.0)
    rig = await make_rig(FakePlugin(), max_workers=1)
    enqueued: list[asyncio.Task[str]] = []

    def enqueue_on_each_start(records: list[Any]) -> None:
        # Each start enqueues the next job, landing while the slot runs, completes or ends.
        if any(isinstance(r.event, JobStarted) for r in records) and len(enqueued) < 5:
            enqueued.append(asyncio.ensure_future(rig.enqueue()))

    rig.events.on_commit(enqueue_on_each_start)
    first = await rig.enqueue()
    await rig.ended(first, "succeeded")
    await rig.until("five jobs enqueued, one per start", lambda: asyncio.sleep(0, len(enqueued) == 5))
    for job_id in await asyncio.gather(*enqueued):
        await rig.ended(job_id, "succeeded")
