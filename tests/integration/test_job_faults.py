"""Plugins that misbehave must not wedge or mislead the job engine (issue 9: B, G, 2, 3).

Real daemon, real plugins (``tests/plugins/behave``), real HTTP. The malformed-output cases
(background children, a child holding stdout, integers beyond 64 bits, ...) live in the corpus,
``test_plugin_corpus.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.daemon import process_alive, wait_until

NS = 1_000_000_000


def test_recovery_kills_stubborn_survivors_together_before_requeueing_and_does_not_hold_up_the_api(
    gateway: Any, tmp_path: Path
) -> None:
    gw = gateway({"behave": {"enabled": True, "retry": {"max_attempts": 3}}})
    pidfiles = [tmp_path / f"stubborn{i}" for i in range(3)]
    ids = [gw.trigger("behave", payload={"mode": "stubborn", "pidfile": str(p)}) for p in pidfiles]
    wait_until(lambda: all(p.exists() and p.read_text() for p in pidfiles), 15, what="three stubborn plugins")
    pids = [int(pid) for p in pidfiles for pid in p.read_text().split()]
    gw.kill9()
    assert all(process_alive(p) for p in pids)
    # The plugin is gone after the restart, so the recovered jobs end dead at claim, not re-run.
    gw.set_plugins({})

    restarted = time.time_ns()
    gw.start()
    wait_until(lambda: not any(process_alive(p) for p in pids), 9, what="the survivors to be killed (one 5 s grace for all)")
    wait_until(lambda: len(_recoveries(gw)) == len(ids), 10, what="the jobs to be re-queued")
    recovered = {r.event.job_id: r for r in _recoveries(gw)}
    assert set(recovered) == set(ids)
    at = [r.recorded_at for r in recovered.values()]
    # They ignore SIGTERM, so they died at the SIGKILL 5 s after it; re-queueing came after that,
    # and one grace served all three.
    assert restarted + 5 * NS <= min(at) and max(at) < restarted + 12 * NS
    # The gateway had started (API up) before the jobs were recovered.
    started = _last_gateway_started(gw)
    assert all(started < r.position for r in recovered.values())
    killed = [line for line in gw.log_lines() if line.get("msg") == "killed surviving plugin process group"]
    assert sorted(line["job_id"] for line in killed) == sorted(ids)


def _records(gw: Any) -> list[Any]:
    from ductile.events.log import read_rows

    with gw.db() as db:
        return read_rows(db)


def _recoveries(gw: Any) -> list[Any]:
    return [r for r in _records(gw) if r.type == "JobRecovered"]


def _last_gateway_started(gw: Any) -> int:
    return max(r.position for r in _records(gw) if r.type == "GatewayStarted")
