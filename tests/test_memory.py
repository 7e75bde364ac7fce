"""Tests for recsvc.application.memory: the garbage collector's tuning."""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from recsvc.application.memory import FULL_COLLECTION_AFTER, tune_garbage_collector


class GarbageCollectorTests(SynchronousTestCase):
    def test_full_collections_come_rarely(self) -> None:
        """Once the reactor runs, what exists is frozen and a full
        collection waits for FULL_COLLECTION_AFTER middle ones (a host
        application's higher setting is kept); the other thresholds stay."""
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        gc.set_threshold(700, 10, 10)
        tune_garbage_collector()
        self.assertEqual(gc.get_threshold(), (700, 10, FULL_COLLECTION_AFTER))
        self.assertGreater(gc.get_freeze_count(), 0)
        gc.set_threshold(500, 20, 1000)
        tune_garbage_collector()
        self.assertEqual(gc.get_threshold(), (500, 20, 1000))
