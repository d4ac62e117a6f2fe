"""The server's tunable settings, importable without the serving stack (numpy, asyncio), so
that building `digitlab`'s argument parser for `serve --help` stays cheap."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Batching:
    """How requests share the model; `digitlab serve`'s flags default to these."""

    max_batch: int = 64  # images per model batch
    max_wait_ms: float = 2.0  # how long a request waits for others to join its batch
    max_pending: int = 64  # requests admitted at once (reading, decoding, waiting); more get 503
    decode_threads: int = os.cpu_count() or 1
