"""The garbage collector of the long-running server (`verdict serve`), settled once it has
started.

Every look allocates many short-lived containers (answers decoded from JSON, arrays' wrappers,
log events); with CPython's default thresholds (700, 10, 10) the young generation is collected
every few hundred of them and each full collection walks every object the server has ever kept,
its imported modules included. Measured over 290 web-provider runs of the scale benchmark's
fleet (4 looks each, in one process): 0.75-0.95 ms of collection a look by default, 0.22 ms
with the start-up objects frozen, ~0.01 ms with the thresholds below as well.

`settle()` moves what exists at start (modules, analyses, the app) out of the collector's sight
(`gc.freeze`) and collects the young generation every `YOUNG` allocations instead of every 700.
Garbage with reference cycles waits a little longer to be freed; nothing else changes.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
OLDER = 20


def settle(young: int = YOUNG, older: int = OLDER) -> tuple[int, int, int]:
    """Freeze the objects alive now and set the thresholds; returns the thresholds set."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, older, older)
    return gc.get_threshold()
