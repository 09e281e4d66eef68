"""The floor of the end-to-end path: bench/api_floor.py's HTTP stack feeding bench/jobs_floor.py's
real dispatcher, both around a writer that costs nothing, in one process as the gateway is.

Served by ``bench/e2e.py --floor`` beside the baseline and the real gateway: the same 8 HTTP
clients post the same enqueues; each is answered once the no-op writer has put the job in its
in-memory queue (one thread hop per batch, as ``events/log.py``'s writer does), the dispatcher
claims and runs it (a real spawn of the plugin), and the process prints ``done`` once every job
has succeeded. What differs from the gateway is only the write: no SQL, no event, no commit.

Run alone: ``python bench/e2e_floor.py --port 8124 --jobs 1000 --config DIR`` (token ``bench-token``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc

from api_floor import create_floor_app
from jobs_floor import MemoryJobs, NoOpLog, in_memory_use_cases, new_command

from ductile.api.app import access_log
from ductile.api.holder import AppHolder
from ductile.api.server import make_server
from ductile.config.discovery import find_config
from ductile.config.loader import load_config
from ductile.runtime.catalog import load_catalog
from ductile.runtime.dispatcher import Dispatcher
from ductile.system import logs

PLUGIN, COMMAND = "catlike", "poll"


class EnqueueOnNoOpLog:
    """api_floor's writer: each trigger's submission puts a new job in the in-memory queue, through
    the no-op log."""

    def __init__(self, log: NoOpLog, decided: MemoryJobs) -> None:
        self._log = log
        self._decided = decided

    async def submit(self) -> None:
        cmd = new_command(PLUGIN, COMMAND)
        await self._log.submit(lambda tx: self._decided.enqueue(tx, cmd))


async def serve(port: int, jobs: int, config_dir: str) -> None:
    config = load_config(find_config(config_dir, None))
    logs.configure(config.service.log_level, stream=open("/dev/null", "w"))  # noqa: SIM115 - for the process's life
    log = NoOpLog()
    decided = MemoryJobs(config.service.max_workers)
    with in_memory_use_cases(decided):
        dispatcher = Dispatcher(log, load_catalog(config), max_workers=config.service.max_workers,  # type: ignore[arg-type]
                                env_passthrough=[], state_dir=config.state_path.parent)
        app = create_floor_app()
        app.state.writer = EnqueueOnNoOpLog(log, decided)
        server = make_server(AppHolder(access_log(app)), "127.0.0.1", port)
        gc.freeze()  # as the gateway does once it has started
        serving = asyncio.create_task(server.serve())
        claiming = asyncio.create_task(dispatcher.run())
        while decided.succeeded < jobs:
            await asyncio.sleep(0.02)
        print("done", flush=True)
        server.should_exit = True
        await serving
        await dispatcher.stop(5)
        await claiming
    log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.jobs, args.config))


if __name__ == "__main__":
    main()
