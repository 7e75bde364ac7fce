"""Tests for recsvc.storage.diskspace: the free-space watch."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from recsvc.storage.diskspace import DiskSpace, free_bytes
from recsvc.testing import ManualRunner, run_now


class DiskSpaceTests(SynchronousTestCase):
    def make(self, readings: list[int], runner=run_now) -> DiskSpace:
        self.clock = Clock()
        self.critical = []
        disk = DiskSpace(
            root="unused", min_free=1000, clock=self.clock, run_blocking=runner,
            measure=lambda root: readings.pop(0),
        )
        disk.on_critical = lambda: self.critical.append(disk.free)
        return disk

    def test_levels(self) -> None:
        """Unknown space is neither low nor critical; under min_free it is
        low (new recordings refused); under half of it, critical (running
        recordings must stop), each second's reading replacing the last."""
        disk = self.make([5000, 900, 400, 5000])
        self.assertEqual((disk.low, disk.critical), (False, False))
        disk.start()
        self.assertEqual((disk.free, disk.low, disk.critical), (5000, False, False))
        self.clock.advance(1)
        self.assertEqual((disk.low, disk.critical), (True, False))
        self.clock.advance(1)
        self.assertEqual((disk.low, disk.critical), (True, True))
        self.assertEqual(self.critical, [400])
        self.clock.advance(1)
        self.assertEqual((disk.low, disk.critical), (False, False))
        disk.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_slow_disk_does_not_pile_up(self) -> None:
        """While a reading has not come back (a stalled mount), no second
        one is started."""
        runner = ManualRunner()
        disk = self.make([5000, 6000], runner)
        disk.start()
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(len(runner.pending), 1)
        runner.run_pending()
        self.assertEqual(disk.free, 5000)
        disk.stop()

    def test_failed_reading_keeps_last(self) -> None:
        """A reading that fails is logged and the last value kept."""
        disk = self.make([5000])
        disk.start()
        disk.measure = lambda root: (_ for _ in ()).throw(OSError(5, "Input/output error"))
        self.clock.advance(1)
        self.assertEqual(disk.free, 5000)
        disk.stop()

    def test_off(self) -> None:
        """min_free 0 turns the watch off: nothing is scheduled."""
        clock = Clock()
        disk = DiskSpace("unused", 0, clock, run_now, measure=lambda root: 0)
        disk.start()
        self.assertEqual((clock.getDelayedCalls(), disk.low), ([], False))

    def test_free_bytes(self) -> None:
        """free_bytes reads the real free space of a directory."""
        self.assertGreater(free_bytes("."), 0)

    def test_start_twice(self) -> None:
        """Starting the watch twice runs one watch, which stop ends."""
        disk = self.make([5000] * 10)
        disk.start()
        disk.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        disk.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
