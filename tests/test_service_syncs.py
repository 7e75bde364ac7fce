"""Tests for RecorderService's sync turns: the recordings hand their audio to
their files in turns, and the filesystem is synced after them."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.storage.syncing import HAND_OVERS_AT_ONCE, SYNC_TURNS
from recsvc.session import Recording
from recsvc.testing import ManualRunner, run_now
from tests.support.builders import rtp, start_request
from tests.support.service import ServiceTestsMixin
from tests.support.syncs import spy_syncs


class SyncTests(ServiceTestsMixin, SynchronousTestCase):
    """Every sync_interval the recordings hand their audio to their files, in
    turns; with sync_filesystem set, a filesystem sync after each turn makes
    it durable. (Advancing the clock a whole interval at once makes every
    turn come together, as after a held-up reactor.)"""

    def make_syncing(self, filesystem: bool = True, error: OSError | None = None) -> ManualRunner:
        """A service whose blocking work is held (see `run_held`), with a
        filesystem sync that counts its calls (or fails with ``error``)."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.filesystem_syncs = 0
        self.durable = spy_syncs(self)
        self.sequences: dict[int, int] = {}

        def sync_filesystem() -> None:
            self.filesystem_syncs += 1
            if error is not None:
                raise error

        if filesystem:
            self.service.syncing.sync_filesystem = sync_filesystem
        return runner

    def talk(self, port: int, packets: int = 3) -> None:
        """The phone on ``port`` sends the next few packets."""
        first = self.sequences.get(port, 0)
        for sequence in range(first, first + packets):
            self.ports.deliver(port, rtp(sequence, bytes([sequence % 251]) * 160))
        self.sequences[port] = first + packets

    def held_filesystem_syncs(self) -> int:
        return sum(1 for _, f, _ in self.runner.pending if f is self.service.syncing.sync_filesystem)

    def run_held(self, filesystem: bool = False, count: int | None = None) -> None:
        """Run the held hand-overs (or, with ``filesystem``, the held
        filesystem syncs), ``count`` of them or all."""
        for entry in list(self.runner.pending):
            if count == 0:
                return
            if (entry[1] is self.service.syncing.sync_filesystem) is filesystem:
                self.runner.pending.remove(entry)
                waiter, f, args = entry
                maybeDeferred(f, *args).chainDeferred(waiter)
                if count is not None:
                    count -= 1

    def stop_held(self, request: StopRequest):
        """Stop a recording, running the blocking work it holds."""
        stopped = self.service.stop_recording(request)
        self.runner.run_pending()
        return stopped

    def test_once_per_sync_interval(self) -> None:
        """Recordings hand their audio over once per storage.sync_interval
        (not every half of it)."""
        self.make_syncing(filesystem=False)
        self.service.syncing.interval = 2.0
        port = self.start().port
        self.talk(port)
        self.service.clock.advance(1.0)
        self.assertEqual(self.runner.pending, [])
        self.service.clock.advance(1.0)
        self.assertEqual(len(self.runner.pending), 1)
        self.run_held()
        self.talk(port)
        self.service.clock.advance(1.9)
        self.assertEqual(self.runner.pending, [])
        self.service.clock.advance(0.1)
        self.assertEqual(len(self.runner.pending), 1)

    def handing_over(self) -> list[str]:
        """The recordings (by id) whose hand-overs are held, in order."""
        return [args[0].path.rsplit("_", 1)[1].removesuffix(".wav")
                for _, f, args in self.runner.pending if f is not self.service.syncing.sync_filesystem]

    def test_hand_overs_take_turns(self) -> None:
        """The recordings hand their audio over in turns spread over the
        sync interval, each once an interval: a recording's turn is the
        one that has just been when it starts."""
        self.make_syncing(filesystem=False)
        ports = {}
        for recording_id in "123":
            ports[recording_id] = self.start(start_request(recording_id)).port
            self.service.clock.advance(0.25)
        handed_over = []
        for _ in range(8):
            for port in ports.values():
                self.talk(port)
            self.service.clock.advance(0.25)
            handed_over.append(self.handing_over())
            self.run_held()
        # Started at 0, 0.25 and 0.5: handed over at 1, 1.25 and 1.5 (the
        # turns from 1 to 2.75 s), and a second later, never together.
        self.assertEqual(handed_over, [["1"], ["2"], ["3"], [], ["1"], ["2"], ["3"], []])

    def test_a_big_turn_hands_over_a_few_at_once(self) -> None:
        """
        A turn with more than HAND_OVERS_AT_ONCE recordings hands over that
        many in one round of the reactor and the rest in the next rounds (a
        Start or Stop waits behind one round only); the turn's filesystem
        sync waits for all of its hand-overs.
        """
        self.make_syncing()
        self.ports.high = self.ports.low + 999
        count = HAND_OVERS_AT_ONCE + 3
        ports = [self.start(start_request(str(number), device=f"00a8590{number:05x}")).port
                 for number in range(count)]
        self.run_held()  # (their Start sidecars)
        for port in ports:
            self.talk(port)
        self.service.syncing.sync_turns(SYNC_TURNS)  # (as the loop does, without the clock's rounds)
        self.assertEqual(len(self.handing_over()), HAND_OVERS_AT_ONCE)
        self.run_held()
        self.assertEqual(self.held_filesystem_syncs(), 0)
        self.service.clock.advance(0)
        self.assertEqual(len(self.handing_over()), 3)
        self.run_held()
        self.assertEqual(self.held_filesystem_syncs(), 1)

    def test_turns_missed_by_a_held_reactor_are_made_up(self) -> None:
        """If the reactor was held up past several turns, the recordings of
        all of them hand over at once, when it runs again."""
        self.make_syncing(filesystem=False)
        ports = []
        for recording_id in "12345":
            ports.append(self.start(start_request(recording_id)).port)
            self.service.clock.advance(0.25)
        for port in ports:
            self.talk(port)
        # Started at 0 to 1 s, a quarter apart: their turns come at 1 to 2 s.
        self.service.clock.advance(0.6)  # 1.25 to 1.85: the turns at 1.5 and 1.75
        self.assertEqual(sorted(self.handing_over()), ["3", "4"])
        self.run_held()
        self.service.clock.advance(0.15)  # the turn after them, at 2 s
        self.assertEqual(sorted(self.handing_over()), ["1", "5"])
        self.run_held()
        for port in ports:
            self.talk(port)
        self.service.clock.advance(5.0)  # every turn, each recording once
        self.assertEqual(sorted(self.handing_over()), ["1", "2", "3", "4", "5"])

    def test_turn_after_the_loop_restarts(self) -> None:
        """When the last recording has ended the loop stops; a recording
        started later still has its first hand-over a whole interval on."""
        self.make_syncing(filesystem=False)
        self.start(start_request("1"))
        self.service.clock.advance(0.5)
        self.stop_held(StopRequest("1"))
        self.service.clock.advance(0.3)  # the turn at 0.75 finds none: the loop stops
        self.service.clock.advance(10.0)
        port = self.start(start_request("2")).port
        self.talk(port)
        self.service.clock.advance(0.75)
        self.assertEqual(self.handing_over(), [])
        self.service.clock.advance(0.25)
        self.assertEqual(self.handing_over(), ["2"])

    def test_filesystem_synced_only_in_turns_with_recordings(self) -> None:
        """A turn without recordings syncs no filesystem: one recording
        costs one filesystem sync an interval."""
        self.make_syncing()
        self.start()
        self.run_held()  # the Start's sidecar
        for _ in range(8):
            self.service.clock.advance(0.25)
            self.run_held()
            self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 2)

    def test_filesystem_synced_after_every_hand_over(self) -> None:
        """With sync_filesystem set, the filesystem is synced once a turn,
        in a thread, only after every recording's hand-over of that turn
        has completed; the files themselves are never made durable one by one."""
        self.make_syncing()
        ports = [self.start(start_request(str(n))).port for n in (1, 2)]
        for port in ports:
            self.talk(port)
        self.service.clock.advance(1.0)
        self.assertEqual((len(self.runner.pending), self.held_filesystem_syncs()), (2, 0))
        self.run_held(count=1)
        self.assertEqual(self.held_filesystem_syncs(), 0)
        self.run_held(count=1)
        self.assertEqual(self.held_filesystem_syncs(), 1)
        self.assertEqual(self.filesystem_syncs, 0)  # in the thread pool, not yet run
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        self.assertEqual(self.durable, [False, False])
        self.assertEqual(self.runner.pending, [])

    def test_no_audio_still_synced(self) -> None:
        """A turn in which no recording had audio to hand over still syncs
        the filesystem (the recordings' Start sidecars are on it), once."""
        self.make_syncing()
        self.start()
        self.run_held()  # the Start's sidecar
        self.service.clock.advance(1.0)
        self.assertEqual(self.held_filesystem_syncs(), 1)
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        self.assertEqual(self.runner.pending, [])

    def test_hand_over_during_filesystem_sync_made_durable_later(self) -> None:
        """A hand-over made while a filesystem sync runs is covered by the
        next one, even when the turns after it have no new audio."""
        self.make_syncing()
        port = self.start().port
        self.talk(port)
        self.service.clock.advance(1.0)
        self.run_held()                      # H1 done; S1 held
        self.talk(port)
        self.service.clock.advance(1.0)      # H2 queued while S1 runs
        self.run_held(filesystem=True)       # S1 done before H2 is written
        self.run_held()                      # H2 written
        self.assertEqual(self.filesystem_syncs, 1)
        self.service.clock.advance(1.0)      # a quiet interval
        self.run_held()
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 2)

    def test_one_filesystem_sync_at_a_time(self) -> None:
        """While a filesystem sync is still running, a later turn's
        hand-overs start no second one; once it is done, the next turn's do."""
        self.make_syncing()
        port = self.start().port

        def interval_handed_over() -> None:
            """The phone talks, a sync interval passes, its hand-over is done."""
            self.talk(port)
            self.service.clock.advance(1.0)
            self.run_held()
            self.assertEqual(self.held_filesystem_syncs(), 1)

        interval_handed_over()
        interval_handed_over()
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        interval_handed_over()
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 2)

    def test_failing_filesystem_sync_falls_back_to_files(self) -> None:
        """A filesystem sync that fails is logged as an error naming the
        cause; the recordings go on, and from then on each hand-over syncs
        its own file (whose fdatasync pins a write error on the recordings
        it hit), with no more filesystem syncs."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        durable = spy_syncs(self)
        self.make_syncing(error=OSError(5, "Input/output error"))
        port = self.start().port
        for _ in range(2):
            self.talk(port)
            self.service.clock.advance(1.0)
            self.run_held()
            self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        self.assertEqual(durable, [False, True])
        failed = [e for e in events if "filesystem failed" in e.get("log_format", "")]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["log_level"].name, "error")
        self.assertIn("Input/output error", failed[0]["reason"])
        self.assertEqual(self.service.registry.get("7").state, "recording")
        self.assertEqual(self.flushLoggedErrors(), [])
        summary = self.successResultOf(self.stop_held(StopRequest("7")))
        self.assertEqual(summary.stats.received, 6)

    def test_one_recording_failing_to_sync_spares_the_others(self) -> None:
        """A recording whose sync raises (a bug) is logged; the others are
        still handed to disk, and the next turn syncs again."""
        durable = spy_syncs(self)
        self.make_syncing()
        first = self.start(start_request("1")).port
        second = self.start(start_request("2")).port
        self.run_held()  # the Start sidecars
        original = Recording.sync

        def sync(recording: Recording) -> Any:
            if recording.recording_id == "1":
                raise ZeroDivisionError("a bug")
            return original(recording)

        self.patch(Recording, "sync", sync)
        self.talk(first)
        self.talk(second)
        self.service.clock.advance(1.0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.run_held()
        self.assertEqual(durable, [False])  # the second recording's hand-over
        self.talk(second)
        self.service.clock.advance(1.0)  # the loop goes on
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.run_held()
        self.assertEqual(durable, [False, False])

    def test_files_synced_one_by_one_without_it(self) -> None:
        """With sync_filesystem None (storage.sync_each_file), every
        hand-over makes its own file durable and nothing else is run."""
        self.make_syncing(filesystem=False)
        self.assertIsNone(self.service.syncing.sync_filesystem)
        ports = [self.start(start_request(str(n))).port for n in (1, 2)]
        for _ in range(2):
            for port in ports:
                self.talk(port)
            self.service.clock.advance(1.0)
            self.assertEqual(len(self.runner.pending), 2)
            self.run_held()
            self.assertEqual(self.runner.pending, [])
        self.assertEqual(self.durable, [True] * 4)


class SyncRunnerTests(ServiceTestsMixin, SynchronousTestCase):
    def test_filesystem_synced_with_synchronous_runner(self) -> None:
        """A run_blocking that completes at once (run_now) still has each
        turn's hand-overs followed by a filesystem sync."""
        self.make_service(runner=run_now)
        syncs = []
        self.service.syncing.sync_filesystem = lambda: syncs.append(None)
        port = self.start().port
        for sequence in range(3):
            self.ports.deliver(port, rtp(sequence, b"x" * 160))
        self.service.clock.advance(1.0)
        self.assertEqual(len(syncs), 1)
