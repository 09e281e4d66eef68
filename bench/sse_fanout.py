"""SSE fan-out cost: draining jobs with stalled ``/events`` subscribers against none.

Starts the real gateway (tests' daemon harness, ``max_workers: 4``, a shell plugin), drains N jobs
(default 200) with no subscriber (the baseline, measured in the same run), then again with K
subscribers (default 50) that connected and never read. ``/healthz`` latency is sampled during
each drain. api.md §5: a client that does not read must not slow anyone else, so the ratio
should stay close to 1.
Last line: ``RESULT bench=sse_fanout value=<s with K> baseline=<s with none> ratio=<v/b>
healthz_ms=<median with K> healthz_base_ms=<median with none>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.daemon import TOKEN, Daemon  # noqa: E402
from tests.integration.sse import open_raw_stream  # noqa: E402


def drain(gw: Daemon, jobs: int) -> tuple[float, float]:
    """Seconds to enqueue and finish ``jobs`` jobs, and the median ``/healthz`` time meanwhile."""
    samples: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get("/healthz")
                samples.append(time.perf_counter() - t)
                time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    started = time.perf_counter()
    ids = [gw.trigger("shellok", payload={"n": i}) for i in range(jobs)]
    pending = set(ids)
    with gw.db() as db:
        while pending:
            marks = ",".join("?" * len(pending))
            rows = db.execute(f"SELECT job_id FROM job_queue WHERE job_id IN ({marks}) AND status = 'succeeded'",
                              tuple(pending)).fetchall()
            pending -= {r[0] for r in rows}
            time.sleep(0.01)
    elapsed = time.perf_counter() - started
    done.set()
    prober.join()
    return elapsed, statistics.median(samples) * 1000 if samples else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gw = Daemon(Path(tmp) / "gw", {"shellok": {"enabled": True}}, service={"log_level": "info"})
        gw.start()
        try:
            drain(gw, 20)  # warm up
            base, base_ms = drain(gw, args.jobs)
            stalled = [open_raw_stream(gw.port, TOKEN, rcvbuf=4096) for _ in range(args.subscribers)]
            try:
                value, value_ms = drain(gw, args.jobs)
            finally:
                for s in stalled:
                    s.close()
        finally:
            gw.close()
    print(f"RESULT bench=sse_fanout value={value:.3f} baseline={base:.3f} ratio={value / base:.3f} "
          f"healthz_ms={value_ms:.1f} healthz_base_ms={base_ms:.1f}")


if __name__ == "__main__":
    main()
