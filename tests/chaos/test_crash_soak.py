"""Crash soak (issue 16 item 1): a real gateway under load from 8 clients, SIGKILLed at seeded
random points and restarted, loses no acknowledged job, ends each job exactly once, never ends a
pipeline parent without its children, runs every side effect at least once, and passes
``system selfcheck``. The seed is printed; ``DUCTILE_SOAK_SEED=<n>`` replays a run's schedule.

The CI-sized run is in ``make test``; the long one (``-m slow``) is ``make soak``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.soak import SEED_ENV, SoakPlan, check, run_soak, seed_from_env, selfcheck


def _soak(root: Path, kills: int, min_jobs: int, delay: tuple[float, float]) -> None:
    seed = seed_from_env()
    print(f"crash soak seed {seed} (replay: {SEED_ENV}={seed})")
    run = run_soak(root, SoakPlan(kills=kills, min_jobs=min_jobs, delay=delay, seed=seed))
    try:
        broken = check(run)
        print(run.figures.line())
        assert not broken, f"seed {seed}: " + "; ".join(broken)
        code, report = selfcheck(run.gw)
        assert code == 0, f"seed {seed}: selfcheck failed: {report}"
        assert run.figures.kills == kills and run.figures.acknowledged >= min_jobs
    finally:
        run.gw.close()


def test_sigkill_under_load_loses_no_acknowledged_job_and_selfcheck_stays_green(tmp_path: Path) -> None:
    _soak(tmp_path, kills=4, min_jobs=100, delay=(0.5, 2.0))


@pytest.mark.slow
def test_long_soak_of_a_thousand_jobs_and_twenty_kills(tmp_path: Path) -> None:
    _soak(tmp_path, kills=20, min_jobs=1000, delay=(0.5, 3.0))
