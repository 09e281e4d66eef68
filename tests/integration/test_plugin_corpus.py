"""The malformed plugin corpus (issue 16 item 2): every way a plugin can break protocol 2.

One daemon serves the module. Its ``misbehave`` plugin (``tests/plugins/misbehave``) breaks the
protocol as ``payload.mode`` asks; a second plugin root holds plugins that fail the trust checks
(no execute bit, an entrypoint outside the plugin directory) and one that loses its execute bit
after boot. Every case's job is enqueued when the daemon starts, so they run side by side; each
test then checks its own: the job ends in the state jobs.md §6-§7 / plugins.md §4-§6 specify with
a clear error, every read of the job works, the daemon answers ``/healthz``, and a normal job
still runs. The last test proves no worker slot was lost: all ``max_workers`` jobs run at once, and a\nnormal job after them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.integration.daemon import TEST_PLUGINS, Daemon, call, error_of, process_alive, wait_until

MIB = 1024 * 1024
WORKERS = 4
MISBEHAVE = {"enabled": True, "retry": {"max_attempts": 1}, "timeouts": {"poll": "1s"}}
SPAWN = "plugin spawn failed: "
NOT_JSON = SPAWN + "decode response: plugin output is not valid JSON"
NO_OUTPUT = SPAWN + "decode response: plugin produced no output on stdout"
TIMED_OUT = "plugin execution timed out after 1s"


def huge_int(where: str) -> str:
    return SPAWN + f"decode response: integer out of range at {where} (allowed: -2^63 to 2^64-1)"


class Case(NamedTuple):
    mode: str
    status: str
    error: str | None  # the job's exact last_error
    result: Any = None  # the stored result, when the case pins it
    extra: dict[str, Any] = {}


CASES = [
    Case("nonjson", "failed", NOT_JSON, "this is not json\n"),
    Case("empty", "failed", NO_OUTPUT),
    Case("stdout_11mib", "failed", SPAWN + "stdout exceeded 10 MiB limit"),
    Case("line_1mib", "succeeded", None, "l" * MIB),
    Case("binary", "failed", NOT_JSON),
    Case("invalid_utf8", "failed", NOT_JSON),
    Case("no_status", "failed", NOT_JSON),
    Case("status_mistyped", "failed", NOT_JSON),
    Case("status_unknown", "failed", NOT_JSON),
    Case("hang", "timed_out", TIMED_OUT),
    Case("ignore_sigterm", "timed_out", TIMED_OUT),  # SIGTERM, 5 s, then SIGKILL
    Case("child_holds_stdout", "succeeded", None, "answered"),  # used at once, not after the 1 s timeout
    Case("fork_fanout", "succeeded", None, "forked 20"),
    Case("exit_137", "failed", NO_OUTPUT),
    Case("stderr_5mib", "succeeded", None, "noisy but fine"),
    Case("stdin_closed", "succeeded", None, "answered without reading", {"pad": "p" * MIB}),
    Case("huge_int_state", "failed", huge_int("state_updates.big")),
    Case("huge_int_event", "failed", huge_int("events[0].payload.n")),
    Case("deep_nesting", "failed", NOT_JSON, "[" * 100_000 + "]" * 100_000),
    Case("error_1mib", "failed", "E" * MIB),
]
LEAVES_PROCESSES = {"ignore_sigterm", "child_holds_stdout", "fork_fanout"}

# Plugins the trust checks refuse (plugins.md §1): skipped at load, boot goes on.
REFUSED = {"noexec": "run.py", "escape": "../misbehave/run.py"}


def manifest(name: str, entrypoint: str) -> str:
    text = (TEST_PLUGINS / "misbehave" / "manifest.yaml").read_text()
    return text.replace("name: misbehave", f"name: {name}").replace("entrypoint: run.py", f"entrypoint: {entrypoint}")


def plugin_dir(root: Path, name: str, entrypoint: str = "run.py", executable: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "manifest.yaml").write_text(manifest(name, entrypoint))
    shutil.copy(TEST_PLUGINS / "misbehave" / "run.py", d / "run.py")
    (d / "run.py").chmod(0o755 if executable else 0o644)
    return d


class Corpus(NamedTuple):
    gw: Daemon
    jobs: dict[str, str]
    pidfiles: dict[str, Path]
    inspected: dict[str, subprocess.CompletedProcess[str]]  # job id -> `ductile job inspect --json`


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("plugin_corpus")
    extra = root / "plugins"
    plugin_dir(extra, "noexec", executable=False)
    plugin_dir(extra, "escape", entrypoint=REFUSED["escape"])
    plugin_dir(extra, "lostexec")
    plugins = {name: MISBEHAVE for name in ("misbehave", "lostexec", *REFUSED)}
    plugins["sleeper"] = {"enabled": True, "uses": "misbehave", "retry": {"max_attempts": 1}}
    gw = Daemon(root / "gw", plugins, service={"max_workers": WORKERS, "shutdown_grace": "1s"},
                plugin_roots=[str(TEST_PLUGINS), str(extra)])
    gw.start()
    try:
        (extra / "lostexec" / "run.py").chmod(0o644)  # after the load: the spawn itself fails
        pidfiles = {c.mode: root / f"{c.mode}.pids" for c in CASES if c.mode in LEAVES_PROCESSES}
        jobs = {}
        for case in CASES:
            payload = {"mode": case.mode, **case.extra}
            if case.mode in pidfiles:
                payload["pidfile"] = str(pidfiles[case.mode])
            jobs[case.mode] = gw.trigger("misbehave", payload=payload)
        jobs["lostexec"] = gw.trigger("lostexec", payload={"mode": "ok"})
        yield Corpus(gw, jobs, pidfiles, inspect_all(gw, list(jobs.values())))
    finally:
        gw.close()


def inspect_all(gw: Daemon, job_ids: list[str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """`ductile job inspect --json` of every job once it has ended, the CLIs side by side (each one
    is a cold start: one after another they would cost the module most of its time)."""
    for job_id in job_ids:
        gw.wait_job(job_id, timeout=30)
    procs = {job_id: subprocess.Popen([sys.executable, "-m", "ductile.cli.main", "job", "inspect", job_id, "--json",
                                       "--config", str(gw.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=gw.root)
             for job_id in job_ids}
    done = {}
    for job_id, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        done[job_id] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def assert_every_read_works(corpus: Corpus, job_id: str) -> dict[str, Any]:
    """GET /job, /job/{id}/tree, /job-logs?include_result=true and `ductile job inspect` all answer."""
    gw = corpus.gw
    job = gw.job(job_id)
    tree = call(gw, "GET", f"/job/{job_id}/tree")
    assert tree.status_code == 200, tree.text[:500]
    assert [n["job_id"] for n in tree.json()] == [job_id]
    logs = call(gw, "GET", "/job-logs", params={"job_id": job_id, "include_result": "true"})
    assert logs.status_code == 200, logs.text[:500]
    [entry] = logs.json()["logs"]
    assert (entry["job_id"], entry["status"], entry.get("last_error")) == (job_id, job["status"], job.get("last_error"))
    inspect = corpus.inspected[job_id]
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert json.loads(inspect.stdout)["job"]["status"] == job["status"]
    return job


def assert_still_serving(gw: Daemon) -> None:
    """/healthz answers ok; that no worker slot was lost is the last test's (a lost slot stays lost)."""
    health = call(gw, "GET", "/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text


@pytest.mark.parametrize("case", CASES, ids=[c.mode for c in CASES])
def test_a_misbehaving_plugin_ends_its_job_as_specified(corpus: Corpus, case: Case) -> None:
    gw = corpus.gw
    job = assert_every_read_works(corpus, corpus.jobs[case.mode])
    assert (job["status"], job.get("last_error")) == (case.status, case.error)
    if case.result is not None:
        result = job["result"]
        assert (result if isinstance(result, str) else result.get("result")) == case.result
    if case.mode in corpus.pidfiles:
        pids = [int(p) for p in corpus.pidfiles[case.mode].read_text().split()]
        wait_until(lambda: not any(process_alive(p) for p in pids), 5, what=f"the processes {case.mode} left to end")
    assert_still_serving(gw)


def test_noisy_stderr_is_kept_head_and_tail_within_64_kib(corpus: Corpus) -> None:
    gw = corpus.gw
    job_id = corpus.jobs["stderr_5mib"]
    gw.wait_job(job_id)
    [entry] = call(gw, "GET", "/job-logs", params={"job_id": job_id, "include_result": "true"}).json()["logs"]
    stderr = entry["stderr"]
    assert stderr.startswith("HEAD-MARKER\n") and stderr.endswith("\nTAIL-MARKER\n")
    assert "bytes truncated ...]" in stderr and len(stderr.encode()) <= 64 * 1024 + 64


def test_an_entrypoint_that_lost_its_execute_bit_fails_its_job_with_the_os_error(corpus: Corpus) -> None:
    gw = corpus.gw
    job = assert_every_read_works(corpus, corpus.jobs["lostexec"])
    assert job["status"] == "failed"
    assert job["last_error"] == SPAWN + "Permission denied"
    assert_still_serving(gw)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_plugin_refused_by_the_trust_checks_is_left_out_and_boot_goes_on(corpus: Corpus, name: str) -> None:
    gw = corpus.gw
    refused = [line for line in gw.log_lines() if line.get("msg") == "failed to load plugin"
               and Path(line.get("path", "")).name in (name, "manifest.yaml") and name in line.get("path", "")]
    assert refused, f"no 'failed to load plugin' line for {name}"
    resp = call(gw, "POST", f"/plugin/{name}/poll", json={"payload": {"mode": "ok"}})
    assert (resp.status_code, error_of(resp)) == (400, "plugin not found")
    assert_still_serving(gw)


def test_a_symlinked_plugin_directory_refuses_boot_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    real = plugin_dir(tmp_path / "elsewhere", "linked")
    root.mkdir()
    (root / "linked").symlink_to(real, target_is_directory=True)
    gw = Daemon(tmp_path / "gw", {"linked": MISBEHAVE}, plugin_roots=[str(root)])
    try:
        gw.start(wait=False)
        assert gw.proc is not None
        assert gw.proc.wait(timeout=30) == 1
        assert (f"symlink not allowed: {root / 'linked'} (set service.allow_symlinks: true to permit)"
                in gw.log_text())
    finally:
        gw.close()


def test_after_the_corpus_every_worker_slot_is_free(corpus: Corpus) -> None:
    gw = corpus.gw
    ids = [gw.trigger("sleeper", payload={"mode": "sleep", "seconds": 1.5}) for _ in range(WORKERS)]
    wait_until(lambda: all(gw.job(j)["status"] == "running" for j in ids), 10,
               what=f"{WORKERS} jobs running at once (a lost slot would hold one queued)")
    assert all(gw.wait_job(j)["status"] == "succeeded" for j in ids)
    assert gw.wait_job(gw.trigger("misbehave", payload={"mode": "ok"}))["status"] == "succeeded"
