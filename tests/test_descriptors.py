"""Tests for recsvc.descriptors: the descriptor limit and table, grown at start."""

from __future__ import annotations

import os
import resource

from twisted.trial.unittest import SynchronousTestCase

from recsvc import descriptors


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

    def test_raiseLimit(self) -> None:
        """
        The soft limit is raised to what is asked (up to the hard limit)
        and never lowered.
        """
        lower = min(self.soft, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, self.hard))
        self.assertEqual(descriptors.raise_limit(lower + 100), min(lower + 100, self.hard))
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(lower + 100, self.hard))
        self.assertEqual(descriptors.raise_limit(10), min(lower + 100, self.hard))

    def test_raiseLimitCappedByHard(self) -> None:
        """
        Beyond the hard limit the soft limit stops at it.
        """
        if self.hard == resource.RLIM_INFINITY:
            raise self.skipTest("no hard limit here")
        self.assertEqual(descriptors.raise_limit(self.hard + 1000), self.hard)

    def test_raiseLimitUnlimited(self) -> None:
        """
        An unlimited soft limit is left as it is.
        """
        calls = []
        self.patch(resource, "getrlimit", lambda kind: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.patch(resource, "setrlimit", lambda *args: calls.append(args))
        self.assertEqual(descriptors.raise_limit(5000), 5000)
        self.assertEqual(calls, [])

    def test_growTableGrowsTheTable(self) -> None:
        """
        After grow_table(n) the kernel's table holds n descriptors (FDSize).
        """
        size = descriptors.grow_table(min(self.soft, 4096))
        with open("/proc/self/status") as status:
            [fdsize] = [int(line.split()[1]) for line in status if line.startswith("FDSize:")]
        self.assertGreaterEqual(fdsize, size)
        self.assertEqual(size, min(self.soft, 4096))

    def test_growTableTouchesNothingOpen(self) -> None:
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

    def test_growTableBeyondLimit(self) -> None:
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
