"""Worker threads that yield the CPU to the reactor's thread.

recsvc's file work (creating, writing, syncing and finishing recordings)
runs in threads of its own process, often on the same core as the reactor.
At equal priority the scheduler lets a busy worker hold the core for a
whole time slice while the reactor waits with a phone's Start in hand
(measured: hundreds of involuntary switches a second, Starts answered
15-30 ms late at 500 phones a second). A worker at a lower priority (a
higher nice value, per thread on Linux) still gets the core whenever the
reactor does not need it, which is most of the time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from twisted.python.threadpool import ThreadPool

BACKGROUND_NICE = 10


def lower_priority() -> bool:
    """Lower the calling thread's priority (Linux: a thread's own nice
    value) to BACKGROUND_NICE, never raising it; False where the system
    does not allow it."""
    try:
        thread = threading.get_native_id()
        nice = max(os.getpriority(os.PRIO_PROCESS, thread), BACKGROUND_NICE)
        os.setpriority(os.PRIO_PROCESS, thread, nice)
    except (AttributeError, OSError):
        return False
    return True


class BackgroundThread(threading.Thread):
    """A thread that lowers its own priority before it runs its target."""

    def run(self) -> None:
        lower_priority()
        super().run()


def background_pool(name: str, maxthreads: int, minthreads: int = 0) -> ThreadPool:
    """A thread pool of `BackgroundThread` workers."""
    pool = ThreadPool(minthreads=minthreads, maxthreads=maxthreads, name=name)
    pool.threadFactory = BackgroundThread  # type: ignore[assignment]
    return pool


def start_until_shutdown(reactor: Any, pool: ThreadPool) -> None:
    """Start ``pool`` now and stop it once the reactor has shut down (after
    the services have finished their work in it)."""
    if not pool.started:
        pool.start()
        reactor.addSystemEventTrigger("after", "shutdown", pool.stop)
