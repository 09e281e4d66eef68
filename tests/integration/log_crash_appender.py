"""Child process of test_log_crash: appenders that print one line per acknowledged event.

Usage: python log_crash_appender.py <state.db> [appenders]

Each appender enqueues one job per append (its own stream, ``expected=NO_STREAM``) and, only
after ``append`` returned, prints the event id in hex and flushes. It runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

from ductile.events.log import NO_STREAM, EventLog
from ductile.events.types import JobEnqueued, job_stream
from ductile.projections.registry import default_runner


async def appender(log: EventLog, n: int) -> None:
    out = sys.stdout
    i = 0
    while True:
        i += 1
        jid = str(uuid.uuid4())
        event = JobEnqueued(
            job_id=jid,
            plugin="echo",
            command="poll",
            payload={"appender": n, "i": i},
            submitted_by="api",
            max_attempts=4,
            at=time.time_ns(),
        )
        recs = await log.append(job_stream(jid), [event], expected=NO_STREAM)
        out.write(recs[0].event_id.hex() + "\n")
        out.flush()


async def main(path: Path, appenders: int) -> None:
    log = EventLog(path, durability="full", projections=default_runner())
    await log.open()
    await asyncio.gather(*(appender(log, n) for n in range(appenders)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100))
