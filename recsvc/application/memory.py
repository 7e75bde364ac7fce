"""The garbage collector tuned for a process whose objects mostly live
as long as it does."""

from __future__ import annotations

import gc


# Middle-generation collections between two full ones, at least (Python's
# default: 10). A full collection goes over every recording's objects: at
# 2,000 recordings it held the reactor, and every thread, for 50 to 110 ms,
# and with the default came every 5 to 8 s (tuned once the reactor runs: recsvc.tap).
FULL_COLLECTION_AFTER = 100


def tune_garbage_collector() -> None:
    """What exists now lives as long as the process: out of the garbage
    collector's way (gc.freeze), so that its full collections stay short;
    and those come more rarely (they stall every thread while they run):
    after FULL_COLLECTION_AFTER middle ones at least."""
    gc.freeze()
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_AFTER))
