"""The recordings' sync turns: every storage.sync_interval each recording hands
its audio to its file, in turns spread over the interval, and the filesystem
is synced after each turn's hand-overs (storage.sync_each_file off)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, Sized

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from recsvc.logs import Logger

# Hand-over turns a storage.sync_interval (see SyncTurns.keep_syncing).
SYNC_TURNS = 4
# Hand-overs made in one go on the reactor at most; a turn's others wait for
# the reactor's next round (at 2,000 recordings a turn's 500 hand-overs took
# 8 ms together, and a Start or Stop waited behind them). More turns would
# shorten them too, but each turn ends with a filesystem sync: sixteen cost
# up to a tenth more CPU a packet at 250 calls.
HAND_OVERS_AT_ONCE = 128


class Syncable(Protocol):
    """What the turns need of a recording (recsvc.session.Recording)."""

    recording_id: str
    # Its turn among the SYNC_TURNS of an interval.
    sync_turn: int
    # Whether each hand-over fdatasyncs its own file.
    sync_files: bool

    def sync(self) -> Deferred[Any] | None: ...


class Recordings(Iterable[Syncable], Sized, Protocol):
    """The recordings running (recsvc.service.Registry)."""


@attrs.define(eq=False)
class SyncTurns:
    """Hands the running recordings' audio to their files, in turns, and
    makes it durable."""

    log = Logger()

    clock: IReactorTime
    run_blocking: Callable[..., Deferred[Any]]
    recordings: Recordings
    # How often (seconds) recorded audio reaches the disk (storage.sync_interval).
    interval: float = 1.0
    # Blocking: makes everything written to the recordings' filesystem
    # durable at once (storage.sync_each_file off), after each turn's
    # hand-overs; None: each recording fdatasyncs its own file.
    sync_filesystem: Callable[[], None] | None = None
    _syncing: LoopingCall | None = None
    # The hand-over turn that comes next (see `sync_turns`).
    _next_turn: int = 0
    _filesystem_syncing: bool = False
    # Hand-overs no filesystem sync has been started after yet.
    _unsynced: list[Deferred[Any]] = attrs.field(factory=list)

    def enrol(self, recording: Syncable) -> None:
        """A recording that starts now takes its turns: the one that has
        just been, so that its next comes a whole interval on. It syncs its
        own file unless the whole filesystem is synced after each turn."""
        recording.sync_turn = (self._next_turn - 1) % SYNC_TURNS
        recording.sync_files = self.sync_filesystem is None
        self.keep_syncing()

    def keep_syncing(self) -> None:
        """Sync recordings every storage.sync_interval while there are
        any: a file is never further behind than that, and every other
        hand-over is made durable. An idle server does not wake up.

        The recordings take turns, SYNC_TURNS an interval, each in its own
        (the one that has just been when it starts): their hand-overs, and
        the audio that waits for them, spread over the interval instead of
        coming all at once."""
        if self._syncing is not None and self._syncing.running:
            return
        # Restarted, the loop's first call is `_next_turn`'s, an interval
        # after that turn last came: as if it had gone on.
        self._syncing = LoopingCall.withCount(self.sync_turns)
        self._syncing.clock = self.clock
        self._syncing.start(self.interval / SYNC_TURNS, now=False).addErrback(
            lambda failure: self.log.failure("Syncing recordings failed", failure)
        )

    def stop(self) -> None:
        """No more turns (until `keep_syncing`)."""
        if self._syncing is not None and self._syncing.running:
            self._syncing.stop()

    def sync_turns(self, count: int) -> None:
        """Hand the audio of the recordings whose turn it is to their files:
        ``count`` turns have come (more than one if the reactor was held up;
        SYNC_TURNS or more: every recording's)."""
        turns = {(self._next_turn + step) % SYNC_TURNS for step in range(min(count, SYNC_TURNS))}
        self._next_turn = (self._next_turn + count) % SYNC_TURNS
        if not len(self.recordings):
            self.stop()
            return
        self._sync([recording for recording in self.recordings if recording.sync_turn in turns])

    def _sync(self, recordings: list[Syncable], storing: list[Deferred[Any]] | None = None,
              ) -> None:
        """Hand these recordings' audio over (HAND_OVERS_AT_ONCE a round of
        the reactor), then make it durable."""
        if not recordings:
            return
        storing = [] if storing is None else storing
        now, later = recordings[:HAND_OVERS_AT_ONCE], recordings[HAND_OVERS_AT_ONCE:]
        for recording in now:
            try:
                stored = recording.sync()
            except Exception:
                # One recording's fault must not keep the others from disk.
                self.log.failure("Recording {recordingId}: syncing failed",
                                 recordingId=recording.recording_id)
                continue
            if stored is not None:
                storing.append(stored)
        if later:
            # (A recording stopped meanwhile hands nothing more over: its
            # finishing does.)
            self.clock.callLater(0, self._sync, later, storing)
            return
        if self.sync_filesystem is None:
            return
        # Every turn that has recordings (their Start sidecars too), after
        # the hand-overs not yet covered: those made while a filesystem
        # sync ran wait for the next one, started as soon as it is done.
        self._unsynced.extend(storing)
        self._sync_filesystem_after_hand_overs()

    def _sync_filesystem_after_hand_overs(self) -> None:
        if self._filesystem_syncing or self.sync_filesystem is None:
            return
        self._filesystem_syncing = True
        waiting, self._unsynced = self._unsynced, []
        # After these hand-overs (failures are the recordings' own).
        DeferredList(waiting, consumeErrors=True).addCallback(
            lambda _: self.run_blocking(self.sync_filesystem)
        ).addErrback(self._filesystem_sync_failed).addBoth(self._filesystem_synced)

    def _filesystem_sync_failed(self, failure: Failure) -> None:
        """The filesystem reported a write error, which it cannot pin on a
        file: from now on each recording syncs its own file, whose fdatasync
        reports the error to (and stops) the recordings it hit."""
        self.log.error("Syncing the recordings' filesystem failed: {reason}; "
                       "syncing each recording's file from now on",
                       reason=failure.getErrorMessage())
        self.sync_filesystem = None
        for recording in self.recordings:
            recording.sync_files = True

    def _filesystem_synced(self, result: object) -> None:
        self._filesystem_syncing = False
        if self._unsynced and len(self.recordings):
            self._sync_filesystem_after_hand_overs()
