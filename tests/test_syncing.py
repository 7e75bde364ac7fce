"""Tests for recsvc.storage.syncing.SyncTurns.enrol: a new recording's turn."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from recsvc.storage.syncing import SYNC_TURNS, SyncTurns
from recsvc.testing import run_now


@attrs.define(eq=False)
class Turned:
    """A recording as the turns see it: its turn, its file syncs, its syncs."""

    recording_id: str
    sync_turn: int = -1
    sync_files: bool = False
    syncs: int = 0

    def sync(self) -> Any:
        self.syncs += 1
        return None


class EnrolTests(SynchronousTestCase):
    def make_turns(self, sync_filesystem=None) -> tuple[Clock, list[Turned], SyncTurns]:
        clock = Clock()
        recordings: list[Turned] = []
        return clock, recordings, SyncTurns(clock, run_now, recordings, 1.0, sync_filesystem)

    def test_a_new_recording_waits_a_whole_interval(self) -> None:
        """A recording enrolled now takes the turn that has just been (its
        first hand-over comes a whole interval on), and enrolling starts the
        turns: one comes each interval / SYNC_TURNS."""
        clock, recordings, turns = self.make_turns()
        first = Turned("1")
        turns.enrol(first)
        recordings.append(first)
        self.assertEqual(first.sync_turn, SYNC_TURNS - 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(1.0 / SYNC_TURNS)  # turn 0 comes
        second = Turned("2")
        turns.enrol(second)
        recordings.append(second)
        self.assertEqual(second.sync_turn, 0)
        for _ in range(SYNC_TURNS - 2):
            clock.advance(1.0 / SYNC_TURNS)
        self.assertEqual((first.syncs, second.syncs), (0, 0))
        clock.advance(1.0 / SYNC_TURNS)  # turn SYNC_TURNS - 1: the first's
        self.assertEqual((first.syncs, second.syncs), (1, 0))
        clock.advance(1.0 / SYNC_TURNS)  # turn 0 again: the second's
        self.assertEqual((first.syncs, second.syncs), (1, 1))

    def test_sync_files_follows_the_filesystem_sync(self) -> None:
        """A recording syncs its own files only when no filesystem sync
        comes after each turn."""
        _, _, own = self.make_turns()
        _, _, whole = self.make_turns(sync_filesystem=lambda: None)
        each, together = Turned("1"), Turned("2", sync_files=True)
        own.enrol(each)
        whole.enrol(together)
        self.assertEqual((each.sync_files, together.sync_files), (True, False))
