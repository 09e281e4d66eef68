"""The rebuild's fold worker (``ductile.projections.fold_worker``) with its bulk folds' ``held``
limit and its chunk lowered (``DUCTILE_TEST_HELD``, ``DUCTILE_TEST_CHUNK``), so that the worker
also writes its oldest rows mid-log: run by a property test in its place
(``fold_worker._WORKER_MODULE``)."""

from __future__ import annotations

import os
import sys

from ductile.projections import fold, fold_worker
from ductile.projections.registry import ALL

if __name__ == "__main__":
    for p in ALL:
        if p.bulk is not None:
            assert hasattr(p.bulk, "held"), p.name  # the limit the bulk fold reads
            p.bulk.held = int(os.environ["DUCTILE_TEST_HELD"])  # type: ignore[attr-defined]
    fold.FOLD_CHUNK = int(os.environ["DUCTILE_TEST_CHUNK"])
    sys.exit(fold_worker.main())
