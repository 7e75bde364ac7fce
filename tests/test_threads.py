"""Tests for recsvc.application.threads: worker threads below the reactor's priority."""

from __future__ import annotations

import os
import threading
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from recsvc.application.threads import (
    BACKGROUND_NICE,
    BackgroundThread,
    background_pool,
    lower_priority,
    start_until_shutdown,
)


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class ThreadPriorityTests(SynchronousTestCase):
    def test_lower_priority(self) -> None:
        """
        lower_priority() lowers the calling thread's priority only: its
        nice value rises to BACKGROUND_NICE, the other threads' stays.
        """
        before = own_nice()
        seen: list[Any] = []

        def lower() -> None:
            seen.append((lower_priority(), own_nice()))

        thread = threading.Thread(target=lower)
        thread.start()
        thread.join()
        self.assertEqual(seen, [(True, max(before, BACKGROUND_NICE))])
        self.assertEqual(own_nice(), before)

    def test_never_raised(self) -> None:
        """
        A thread already below BACKGROUND_NICE stays there.
        """
        seen: list[Any] = []

        def lower() -> None:
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICE + 5)
            seen.append((lower_priority(), own_nice()))

        thread = threading.Thread(target=lower)
        thread.start()
        thread.join()
        self.assertEqual(seen, [(True, BACKGROUND_NICE + 5)])

    def test_background_thread(self) -> None:
        """
        A BackgroundThread runs its target at the lowered priority.
        """
        seen: list[int] = []
        thread = BackgroundThread(target=lambda: seen.append(own_nice()))
        thread.start()
        thread.join()
        self.assertEqual(seen, [max(own_nice(), BACKGROUND_NICE)])

    def test_background_pool(self) -> None:
        """
        A background pool's workers are BackgroundThreads: work runs at the
        lowered priority.
        """
        pool = background_pool("test-background", maxthreads=2)
        self.assertEqual((pool.name, pool.max, pool.min), ("test-background", 2, 0))
        done = threading.Event()
        seen: list[int] = []

        def work() -> None:
            seen.append(own_nice())
            done.set()

        pool.start()
        self.addCleanup(pool.stop)
        pool.callInThread(work)
        self.assertTrue(done.wait(10))
        self.assertEqual(seen, [max(own_nice(), BACKGROUND_NICE)])

    def test_start_until_shutdown(self) -> None:
        """
        start_until_shutdown() starts the pool and has it stopped after the
        reactor's shutdown, once however often it is called.
        """

        class Reactor:
            triggers: list[tuple[str, str, Any]] = []

            def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> None:
                self.triggers.append((phase, event, f))

        reactor = Reactor()
        pool = background_pool("test-started", maxthreads=1)
        start_until_shutdown(reactor, pool)
        start_until_shutdown(reactor, pool)
        self.assertTrue(pool.started)
        self.assertEqual(reactor.triggers, [("after", "shutdown", pool.stop)])
        pool.stop()
