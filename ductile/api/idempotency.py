"""The ``Idempotency-Key`` of ``POST /plugin/{plugin}/{command}`` (api.md §1): what a key may be,
how the header is declared to Litestar (so the OpenAPI document names it), and the replay header.

The key becomes the job's ``dedupe_key``; the writer's enqueue dedupe (jobs.md §4.1) decides, so
concurrent sends of one key make one job. Nothing here stores anything.
"""

from __future__ import annotations

import re
from typing import Annotated

from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter

from ductile.api.errors import ApiError

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_LENGTH = 255

# 1-255 printable ASCII characters (0x20-0x7E). A header's bytes arrive latin-1 decoded, so any
# other byte shows here as a character outside this range.
_VALID = re.compile(rf"[\x20-\x7e]{{1,{MAX_LENGTH}}}")
_DESCRIPTION = (
    "Makes the request safe to retry: it becomes the job's dedupe_key, and a repeat while the first job is "
    "outstanding or succeeded within service.dedupe_ttl answers 202 with that job (deduped: true)."
)

Key = Annotated[
    str | None,
    HeaderParameter(name=HEADER, required=False, description=_DESCRIPTION,
                    # Documentation only: the handler checks the key itself, so that a bad one is our 400.
                    schema_extra={"minLength": 1, "maxLength": MAX_LENGTH, "pattern": "^[\\x20-\\x7e]+$"}),
]

RESPONSE_HEADERS = [
    ResponseHeader(name=REPLAYED, documentation_only=True, required=False,
                   description="true when the answer is the job an earlier request with this Idempotency-Key made"),
]
REPLAY_HEADERS = {REPLAYED: "true"}


def checked(key: str | None) -> str | None:
    """``key`` when absent or valid; a malformed key is 400 ``invalid Idempotency-Key``."""
    if key is None or _VALID.fullmatch(key):
        return key
    raise ApiError(400, f"invalid {HEADER}")
