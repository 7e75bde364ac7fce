"""Tests for recsvc.application.descriptors: the descriptor limit and table, grown at start."""

from __future__ import annotations

import os
import resource

from twisted.trial.unittest import SynchronousTestCase

from recsvc.application import descriptors


class DescriptorTests(SynchronousTestCase):
    def setUp(self) -> None:
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, limits)
        self.soft, self.hard = limits

    def test_wanted(self) -> None:
        """
        Three descriptors a recording, and a few to spare.
        """
        self.assertEqual(descriptors.wanted(1000), 3064)

    def test_raise_limit(self) -> None:
        """
        The soft limit is raised to what is asked (up to the hard limit)
        and never lowered.
        """
        lower = min(self.soft, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, self.hard))
        self.assertEqual(descriptors.raise_limit(lower + 100), min(lower + 100, self.hard))
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(lower + 100, self.hard))
        self.assertEqual(descriptors.raise_limit(10), min(lower + 100, self.hard))

    def test_raise_limit_capped_by_hard(self) -> None:
        """
        Beyond the hard limit the soft limit stops at it.
        """
        if self.hard == resource.RLIM_INFINITY:
            raise self.skipTest("no hard limit here")
        self.assertEqual(descriptors.raise_limit(self.hard + 1000), self.hard)

    def test_raise_limit_unlimited(self) -> None:
        """
        An unlimited soft limit is left as it is.
        """
        calls = []
        self.patch(resource, "getrlimit", lambda kind: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.patch(resource, "setrlimit", lambda *args: calls.append(args))
        self.assertEqual(descriptors.raise_limit(5000), 5000)
        self.assertEqual(calls, [])

    def test_grow_table_grows_the_table(self) -> None:
        """
        After grow_table(n) the kernel's table holds n descriptors (FDSize).
        """
        size = descriptors.grow_table(min(self.soft, 4096))
        with open("/proc/self/status") as status:
            [fdsize] = [int(line.split()[1]) for line in status if line.startswith("FDSize:")]
        self.assertGreaterEqual(fdsize, size)
        self.assertEqual(size, min(self.soft, 4096))

    def test_grow_table_touches_nothing_open(self) -> None:
        """
        Growing the table leaves every open descriptor open and takes none
        for good.
        """
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        lowest = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest)
        size = descriptors.grow_table(min(self.soft, 4096))
        self.assertEqual(size, min(self.soft, 4096))
        os.write(write, b"x")
        self.assertEqual(os.read(read, 1), b"x")
        probe = os.open(os.devnull, os.O_RDONLY)
        os.close(probe)
        self.assertEqual(probe, lowest)  # the lowest free one, as before

    def test_grow_table_beyond_limit(self) -> None:
        """
        A table beyond the soft limit cannot be had: 0.
        """
        self.assertEqual(descriptors.grow_table(self.soft + 1), 0)

    def test_reserve(self) -> None:
        """
        reserve() raises the limit as far as the ports need and grows the
        table to match.
        """
        limit, size = descriptors.reserve(100)
        self.assertGreaterEqual(limit, min(descriptors.wanted(100), self.hard))
        self.assertEqual(size, min(descriptors.wanted(100), limit))


class BudgetTests(SynchronousTestCase):
    def test_arithmetic(self) -> None:
        """The control side needs its connections, an RTP socket and a file
        a recording, the index and a margin; the web port two a connection;
        SPARE the rest."""
        budget = descriptors.Budget(5000, 1000, 256)
        self.assertEqual(budget.control_side, 5000 + 2000 + 4 + 32)
        self.assertEqual(budget.total, 7036 + 512 + 64)
        self.assertEqual(budget.held_back(control_open=10, recordings_open=100),
                         4990 + 1800 + 36)
        self.assertEqual(budget.held_back(control_open=6000, recordings_open=2000), 36)

    def test_within_a_lower_limit(self) -> None:
        """Under a lower limit the control port is held room for fewer
        connections, never fewer than one a recording."""
        budget = descriptors.Budget(5000, 1000, 256)
        self.assertIs(budget.within(budget.total), budget)
        self.assertEqual(budget.within(budget.total - 100).control_connections, 4900)
        self.assertEqual(budget.within(3200).control_connections, 1000)
        self.assertEqual(budget.within(3200).recordings, 1000)

    def test_within_a_limit_below_the_recordings(self) -> None:
        """Under a limit too low for every recording (1,000 ports, a hard
        limit of 1,024), fewer recordings are held room for, each with its
        connection, so that the web port keeps WEB_FLOOR connections' room
        and the control side leaves room for a phone's next connection."""
        budget = descriptors.Budget(5000, 1000, 256).within(1024)
        floor = descriptors.PER_WEB_CONNECTION * descriptors.WEB_FLOOR + descriptors.SPARE
        self.assertEqual(budget.recordings, (1024 - floor - 36) // 3)
        self.assertEqual(budget.control_connections, budget.recordings)
        self.assertLessEqual(budget.control_side, 1024 - floor)
        # Nothing open yet but the listeners and logs (30): a web connection
        # and an idle control connection are taken.
        room = descriptors.DescriptorRoom(budget, 1024, lambda: 0.0,
                                          lambda: descriptors.InUse(0, 0, 0), lambda: 30)
        self.assertTrue(room.for_web())
        self.assertTrue(room.for_idle_control())
        # Web connections only: they stop at the reserve.
        self.assertFalse(descriptors.DescriptorRoom(
            budget, 1024, lambda: 0.0, lambda: descriptors.InUse(0, 0, 0),
            lambda: 1024 - budget.control_side - 1).for_web())


class DescriptorRoomTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.now = 0.0
        self.open = 100
        self.counts = 0
        self.using = descriptors.InUse(0, 0, 0)

        def count() -> int:
            self.counts += 1
            return self.open

        self.room = descriptors.DescriptorRoom(descriptors.Budget(50, 20, 10), 300,
                                               lambda: self.now, lambda: self.using, count)

    def test_web_refused_at_the_reserve(self) -> None:
        """A web connection is taken while the free descriptors stay above
        what the control side may still open (50 + 2 x 20 + 36 = 126) by
        two; the recordings begun and the connections made use theirs."""
        self.open = 300 - 126 - 2
        self.assertTrue(self.room.for_web())
        self.open += 1
        self.now += descriptors.RECOUNT_EVERY_S
        self.assertFalse(self.room.for_web())
        # Twenty calls begun: their descriptors are no longer held back.
        self.open += 60
        self.using = descriptors.InUse(20, 20, 0)
        self.now += descriptors.RECOUNT_EVERY_S
        self.assertFalse(self.room.for_web())
        self.open -= 2
        self.now += descriptors.RECOUNT_EVERY_S
        self.assertTrue(self.room.for_web())

    def test_idle_control_keeps_the_recordings_room(self) -> None:
        """A control connection without a Start is taken while the free
        descriptors stay above what the recordings not begun may open."""
        self.open = 300 - (40 + 36) - 1
        self.assertTrue(self.room.for_idle_control())
        self.assertFalse(self.room.for_web())
        self.open += 1
        self.now += descriptors.RECOUNT_EVERY_S
        self.assertFalse(self.room.for_idle_control())

    def test_counted_once_a_second(self) -> None:
        """Within a second the last count is used, with what is known to
        have opened since added: two a recording, one a connection."""
        self.open = 100
        self.assertEqual(self.room.free(), 200)
        self.using = descriptors.InUse(3, 2, 4)
        self.open = 0  # (not looked at again within the second)
        self.assertEqual(self.room.free(), 200 - 3 - 4 - 4)
        self.assertEqual(self.counts, 1)
        self.now += descriptors.RECOUNT_EVERY_S
        self.assertEqual(self.room.free(), 300)
        self.assertEqual(self.counts, 2)

    def test_uncountable(self) -> None:
        """Where the descriptors cannot be counted, nothing is refused."""
        self.room.count = lambda: None
        self.assertIsNone(self.room.free())
        self.assertTrue(self.room.for_web())
        self.assertTrue(self.room.for_idle_control())

    def test_count_open(self) -> None:
        """count_open sees a descriptor opened and closed."""
        before = descriptors.count_open()
        if before is None:
            raise self.skipTest("descriptors cannot be listed here")
        read, write = os.pipe()
        self.assertEqual(descriptors.count_open(), before + 2)
        os.close(read)
        os.close(write)
        self.assertEqual(descriptors.count_open(), before)
