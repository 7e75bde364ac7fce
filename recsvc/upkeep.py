"""The recordings already on disk: start-up recovery (which new files wait
for), the retention sweeps, the index catching up, and the disk watch."""

from __future__ import annotations

import os
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from recsvc.archive.uploader import Archive, NoArchive
from recsvc.index.indexer import Indexer, NoIndex
from recsvc.logs import Logger
from recsvc.session import RunBlocking
from recsvc.storage.diskspace import DiskSpace, free_bytes
from recsvc.storage.folder import Storage
from recsvc.storage.recovery import CRASH_REASON, Recovered, recover_all
from recsvc.storage.retention import TOO_OLD, RetentionPolicy, StoredRecording
from recsvc.storage.retention import sweep as retention_sweep


@attrs.define(eq=False)
class StorageUpkeep:
    """What the service does with the finished recordings below the storage
    root, once the reactor runs (see ``reactor_running``) until ``stop``.

    ``in_use`` says whether a WAV path is one of this run's recordings,
    which recovery and retention must not touch (called from their thread);
    ``running`` whether the service still runs (sweeps begin only if so);
    ``disk_critical`` is called when the free space runs critically low.
    """

    log = Logger()

    clock: IReactorTime
    storage: Storage
    run_blocking: RunBlocking
    in_use: Callable[[str], bool]
    running: Callable[[], bool]
    disk_critical: Callable[[], None]
    # Watches the free space (storage.min_free_mb); None: not watched.
    disk: DiskSpace | None = None
    retention: RetentionPolicy = RetentionPolicy()
    retention_interval: float = 600.0
    # Keeps the index of finished recordings (index.database); NoIndex: none.
    index: Indexer | NoIndex = attrs.field(factory=NoIndex)
    # Uploads the finished recordings (archive.url); NoArchive: none.
    archive: Archive | NoArchive = attrs.field(factory=NoArchive)
    # Fires with what start-up recovered from a crash (see recsvc.storage.recovery).
    recovery: Deferred[list[Recovered]] | None = None
    _sweeping: LoopingCall | None = None
    _sweep_running: bool = False
    _recovering: bool = False
    _after_recovery: list[Deferred[None]] = attrs.field(factory=list)

    def reactor_running(self) -> None:
        """What needs threads and timers once the reactor runs: finish what
        a crash left behind, watch the disk."""
        recovered = self.recover()
        recovered.addBoth(self._catch_up_index)
        # The archive looks for what waits once recovery has finished the
        # recordings a crash cut short (they wait too).
        recovered.addBoth(self._start_archive)
        if self.disk is not None:
            self.disk.on_critical = self.disk_critical
            self.disk.start()
        if self.retention.active and self._sweeping is None:
            # Sweeps begin once recovery is done: a recovered file without
            # its sidecar yet must not look like a finished one.
            self._sweeping = LoopingCall(self.sweep)
            self._sweeping.clock = self.clock
            recovered.addBoth(lambda _: self._start_sweeping())

    def stop(self) -> None:
        """Stop watching the disk and sweeping (the service is shutting down)."""
        if self.disk is not None:
            self.disk.stop()
        self.archive.stop()
        if self._sweeping is not None and self._sweeping.running:
            self._sweeping.stop()

    def _start_sweeping(self) -> None:
        if self._sweeping is None or self._sweeping.running or not self.running():
            return
        self._sweeping.start(self.retention_interval, now=True).addErrback(
            lambda failure: self.log.failure("Retention sweeps failed", failure)
        )

    def sweep(self) -> Deferred[list[StoredRecording]] | None:
        """Delete the oldest finished recordings the retention policy no
        longer keeps (in a thread); one sweep at a time."""
        if self._sweep_running:
            return None
        self._sweep_running = True

        def swept(removed: list[StoredRecording]) -> list[StoredRecording]:
            self._sweep_running = False
            gone = [recording for recording in removed if recording.whole]
            if gone:
                self.index.forget([recording.wav for recording in gone])
                # Only max_age_days reaches into the archive: the size and
                # free-space rules are about this disk.
                self.archive.forget([
                    os.path.relpath(path, self.storage.root) for recording in gone
                    if recording.why == TOO_OLD
                    for path in (recording.wav, recording.sidecar) if path is not None])
            for recording in removed:
                if recording.whole:
                    self.log.info("Retention removed {file} ({rule})", file=recording.wav,
                                  rule=recording.why, reason="retention")
                else:
                    self.log.info("Retention removed the local copy of {file} (verified in "
                                  "the archive)", file=recording.wav, reason="retention")
            if removed:
                self.log.info("Retention sweep removed {count} recordings and {copies} local "
                              "copies of archived ones ({megabytes} MB)",
                              count=len(gone), copies=len(removed) - len(gone),
                              megabytes=round(sum(r.size if r.whole else r.audio_bytes
                                                  for r in removed) / 1e6, 1))
            if isinstance(self.archive, Archive) and len(removed) > len(gone):
                self.archive.metrics.archive_local_copies_deleted(len(removed) - len(gone))
            return removed

        def failed(failure: Failure) -> list[StoredRecording]:
            self._sweep_running = False
            self.log.failure("Retention sweep failed", failure)
            return []

        # With the archive on, a sidecar alone may be an archived recording,
        # and a WAV verified in the archive can go first to free space.
        in_archive = self.archive.holds_local_copy if isinstance(self.archive, Archive) else None

        def run(held: frozenset[str]) -> Deferred[list[StoredRecording]]:
            return self.run_blocking(
                retention_sweep, self.storage.root, self.retention, self.clock.seconds(),
                free_bytes, self.in_use, in_archive is not None, in_archive, held,
            ).addCallbacks(swept, failed)

        def holds_unknown(failure: Failure) -> list[StoredRecording]:
            # (Without the holds, nothing may go: the next sweep tries again.)
            self._sweep_running = False
            self.log.error("Retention sweep skipped: the legal holds cannot be read from the "
                           "index: {reason}", reason=failure.getErrorMessage())
            return []
        return self.index.held_paths().addCallbacks(run, holds_unknown)

    def _start_archive(self, result: Any) -> Any:
        if self.running():
            self.archive.start()
        return result

    def _catch_up_index(self, result: Any) -> Any:
        """Once recovery is done: index what the index missed (recovered
        files among them)."""
        self.index.catch_up()
        return result

    def recover(self) -> Deferred[list[Recovered]]:
        """Finish the recordings a crash left behind (in a thread); fires
        with what was recovered. Files for new recordings wait for it."""
        self._recovering = True
        self.recovery = self.run_blocking(
            recover_all, self.storage.root, self.storage.write_sidecar, self.in_use,
        ).addCallbacks(self._recovered, self._recovery_failed)
        self.recovery.addBoth(self._recovery_finished)
        return self.recovery

    def _recovery_finished(self, result: Any) -> Any:
        self._recovering = False
        waiting, self._after_recovery = self._after_recovery, []
        for waiter in waiting:
            waiter.callback(None)
        return result

    def recovery_done(self) -> Deferred[None]:
        """Fires once start-up recovery is done (at once if none is under
        way): it must never see (and finish) a file being created."""
        if not self._recovering:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._after_recovery.append(waiter)
        return waiter

    def _recovered(self, recovered: list[Recovered]) -> list[Recovered]:
        for each in recovered:
            self.log.warn(
                "Recovered {file} ({duration} s) left by a crash",
                file=each.path, duration=each.duration_s, reason=CRASH_REASON,
            )
        return recovered

    def _recovery_failed(self, failure: Failure) -> list[Recovered]:
        self.log.failure("Recovering interrupted recordings failed", failure)
        return []
