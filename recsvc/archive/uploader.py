"""The archive beside the recorder: told of each finished file, it uploads
the recording's files on threads of its own (never the reactor's, never
waited for by a recording), pauses with a growing delay while the store
fails, deletes local WAVs once verified and keep_local_days has passed,
and says how far behind it is."""

from __future__ import annotations

import os
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from recsvc.application.threads import background_pool, start_until_shutdown
from recsvc.archive import journal
from recsvc.archive.backlog import Backlog, FailureCauses, WaitingRecording, retry_delay
from recsvc.archive.layout import ArchiveLocation
from recsvc.archive.store import IObjectStore, StoreFailure
from recsvc.archive.transfer import LocalFileGone, ObjectInTheWay, Verified, archive_file
from recsvc.logs import Logger
from recsvc.metrics import Metrics, NoMetrics
from recsvc.storage.folder import sidecar_path
from recsvc.summary import RecordingSummary

# Recordings uploaded at once (each a thread of recsvc-archive); one more
# thread for the start-up scan, the local copies' sweeps and deletions.
UPLOADS_AT_ONCE = 2
# Seconds between two sweeps of the local copies whose keep_local_days is over.
LOCAL_SWEEP_INTERVAL = 3600.0


@attrs.frozen
class ArchiveStatus:
    """How far behind the archive is (for /healthz and /metrics)."""

    files_waiting: int
    bytes_waiting: int
    oldest_waiting_s: float
    # The causes of the failures since the last verified upload.
    failing: tuple[str, ...] = ()
    # Recordings not uploaded until the next start: another object is at
    # their key (they wait no more; their local copies stay).
    set_aside: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"files_waiting": self.files_waiting, "bytes_waiting": self.bytes_waiting,
                "oldest_waiting_s": round(self.oldest_waiting_s, 1),
                "failing": list(self.failing), "set_aside": self.set_aside}


def _waiting_file(root: str, wav_path: str, has_audio: bool,
                  recording_id: str) -> WaitingRecording | None:
    """A just finished file as a WaitingRecording (blocking: sizes)."""
    sidecar = sidecar_path(wav_path)
    try:
        sidecar_stat = os.stat(sidecar)
        size = sidecar_stat.st_size + (os.stat(wav_path).st_size if has_audio else 0)
    except FileNotFoundError:
        return None
    return WaitingRecording(
        sidecar=os.path.relpath(sidecar, root),
        wav=os.path.relpath(wav_path, root) if has_audio else None,
        size=size, since=sidecar_stat.st_mtime, recording_id=recording_id)


@attrs.define(eq=False)
class Archive:
    """Uploads the finished recordings under ``root`` to ``store`` at
    ``location``. ``run_blocking`` runs its blocking work (None: a pool
    ``recsvc-archive`` of its own, started by `start`); ``announce`` is
    given each archived recording's event (the ``hooks.on_archived``
    webhook's deliver) and ``metrics`` told of uploads. ``node`` is this
    node's name: the folder of the store its recordings go to when their
    sidecars name none (see layout.node_of)."""

    log = Logger()

    reactor: Any
    root: str
    location: ArchiveLocation
    store: IObjectStore
    keep_local_days: float = 0.0
    node: str = "recsvc"
    run_blocking: Callable[..., Deferred[Any]] | None = None
    announce: Callable[[dict[str, Any]], None] | None = None
    metrics: Metrics | NoMetrics = attrs.field(factory=NoMetrics)
    uploads_at_once: int = UPLOADS_AT_ONCE
    local_sweep_interval: float = LOCAL_SWEEP_INTERVAL
    _pool: ThreadPool | None = None
    _backlog: Backlog = attrs.field(factory=Backlog)
    _causes: FailureCauses = attrs.field(factory=FailureCauses)
    _failures: int = 0  # in a row
    _retry: IDelayedCall | None = None
    _running: bool = False
    _sweeping: LoopingCall | None = None
    _idle_waiters: list[Deferred[None]] = attrs.field(factory=list)

    def _run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self.run_blocking is not None:
            return self.run_blocking(f, *args)
        if self._pool is None:
            self._pool = background_pool("recsvc-archive", maxthreads=self.uploads_at_once + 1)
            start_until_shutdown(self.reactor, self._pool)
        return deferToThreadPool(self.reactor, self._pool, f, *args)

    def start(self) -> Deferred[None]:
        """Once recovery is done: queue every finished recording not yet
        verified in the store (uploads a crash cut short among them), start
        uploading, and sweep the local copies. Fires once they are queued."""
        self._running = True
        self.log.info("Archive: {url}: looking for recordings to upload", url=self.location.url)
        # The sweeps begin once the look is over: a WAV a sweep deletes
        # while it is looked at must not hide its recording's sidecar.
        return self._run(_look, self.root).addCallbacks(
            self._found, self._scan_failed).addBoth(self._start_sweeping)

    def _start_sweeping(self, result: Any) -> Any:
        if self._running and self._sweeping is None:
            self._sweeping = LoopingCall(self.sweep_local_copies)
            self._sweeping.clock = self.reactor
            self._sweeping.start(self.local_sweep_interval, now=True).addErrback(
                lambda failure: self.log.failure("Archive: local copies' sweeps failed", failure))
        return result

    def _found(self, waiting: list[WaitingRecording]) -> None:
        added = [recording for recording in waiting if self._backlog.add(recording)]
        self.log.info("Archive: {count} recordings to upload ({megabytes} MB)",
                      count=len(added), megabytes=round(sum(r.size for r in added) / 1e6, 1))
        self._pump()

    def _scan_failed(self, failure: Failure) -> None:
        self._disk_failed(failure, "Archive: looking for recordings to upload failed: {reason} "
                                   "(they are looked for again at the next start)")

    def _disk_failed(self, failure: Failure, message: str, **fields: Any) -> None:
        """Log a failure of the disk or the store (an error, with its reason);
        anything else is a bug (a traceback)."""
        if failure.check(OSError, StoreFailure):
            self.log.error(message, reason=_reason(failure.value), **fields)
        else:
            self.log.failure(message, failure, reason="bug", **fields)

    def stop(self) -> None:
        """No more uploads begin (those under way end in their threads; the
        rest wait on the disk for the next start)."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._sweeping is not None and self._sweeping.running:
            self._sweeping.stop()

    def file_finished(self, wav_path: str, summary: RecordingSummary) -> None:
        """A recording's file and sidecar are finished: upload them. Returns
        at once."""
        self.queue(wav_path, summary.file is not None, summary.info.recording_id)

    def queue(self, wav_path: str, has_audio: bool, recording_id: str) -> None:
        """Upload a finished file (at ``wav_path``, whether it exists or the
        recording ``has_audio`` or not) and its sidecar. Returns at once."""
        if not self._running:
            return  # (shutting down: the next start finds it on the disk)
        self._run(_waiting_file, self.root, wav_path, has_audio, recording_id).addCallbacks(
            self._queue, self._disk_failed,
            errbackArgs=("Archive: queueing {file} failed: {reason} (it is queued again at "
                         "the next start)",), errbackKeywords={"file": wav_path})

    def _queue(self, recording: WaitingRecording | None) -> None:
        if recording is not None and self._backlog.add(recording):
            self._pump()

    def status(self, now: float | None = None) -> ArchiveStatus:
        now = self.reactor.seconds() if now is None else now
        return ArchiveStatus(self._backlog.files, self._backlog.bytes,
                             self._backlog.oldest_age(now), self._causes.ongoing,
                             self._backlog.aside)

    def idle(self) -> Deferred[None]:
        """Fires once nothing waits (for tests and tools)."""
        if not self._backlog.recordings:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _pump(self) -> None:
        while self._running and self._retry is None \
                and self._backlog.under_way < self.uploads_at_once:
            recording = self._backlog.take()
            if recording is None:
                break
            Deferred.fromCoroutine(self._archive(recording)).addErrback(
                self._bug, recording)

    async def _archive(self, recording: WaitingRecording) -> None:
        verified: list[Verified] = []
        try:
            for relative in recording.files:
                if relative in recording.verified:
                    continue
                verified.append(await self._run(archive_file, self.store, self.root,
                                                self.location, relative, self.node))
        except LocalFileGone as gone:
            self.log.info("Archive: {file} is gone (retention?): not uploaded",
                          file=str(gone), reason="local file gone")
            self._finished(recording)
            return
        except ObjectInTheWay as failure:
            self._in_the_way(recording, failure)
            return
        except StoreFailure as failure:
            self._failed(recording, failure)
            return
        if self.keep_local_days == 0 and recording.wav is not None:
            wav = next((each for each in verified if each.relative_path == recording.wav), None)
            if wav is not None:
                deleted = await self._run(_delete_local_copy, self.root, wav.relative_path,
                                          wav.local)
                if deleted:
                    self.metrics.archive_local_copies_deleted(1)
        self._verified(recording, verified)

    def _verified(self, recording: WaitingRecording, verified: list[Verified]) -> None:
        for cause, count in self._causes.succeeded().items():
            self.log.info("Archive: uploads work again ({reason}: {count} failures)",
                          reason=cause, count=count)
        self._failures = 0
        self.metrics.archive_verified(len(verified), sum(v.local.size for v in verified
                                                         if v.sent))
        node = verified[0].node if verified else self.node
        sidecar_key = self.location.key(node, recording.sidecar)
        wav_key = None if recording.wav is None else self.location.key(node, recording.wav)
        self.log.info("Archive: {file} verified in {url}", file=recording.wav or recording.sidecar,
                      url=self.location.url, key=wav_key or sidecar_key,
                      recordingId=recording.recording_id)
        if self.announce is not None:
            self.announce({
                "event": "archived", "id": recording.recording_id,
                "path": recording.wav, "sidecar": recording.sidecar,
                "bucket": self.location.bucket, "key": wav_key, "sidecar_key": sidecar_key,
                "sha256": {v.key: v.local.sha256 for v in verified},
            })
        self._finished(recording)

    def _finished(self, recording: WaitingRecording) -> None:
        self._backlog.done(recording)
        if not self._backlog.recordings:
            waiting, self._idle_waiters = self._idle_waiters, []
            for waiter in waiting:
                waiter.callback(None)
        self._pump()

    def _failed(self, recording: WaitingRecording, failure: StoreFailure) -> None:
        self._backlog.give_back(recording)
        self.metrics.archive_failed(failure.cause)
        if self._causes.failed(failure.cause):
            self.log.warn("Archive: uploads to {url} fail: {reason} ({detail}); retrying, "
                          "the recordings wait on the disk", url=self.location.url,
                          reason=failure.cause, detail=failure.detail,
                          file=recording.wav or recording.sidecar,
                          recordingId=recording.recording_id)
        self._pause()

    def _in_the_way(self, recording: WaitingRecording, failure: StoreFailure) -> None:
        """Another object is at one of its keys: this recording is not
        uploaded (what is not verified stays on the disk) until the next
        start; the others go on, unpaused."""
        self.metrics.archive_failed(failure.cause)
        self.log.error("Archive: {file} not uploaded: {detail}; left on the disk, tried "
                       "again at the next start", file=recording.wav or recording.sidecar,
                       detail=failure.detail, reason=failure.cause,
                       recordingId=recording.recording_id)
        self._backlog.set_aside(recording)
        self._finished(recording)

    def _bug(self, failure: Failure, recording: WaitingRecording) -> None:
        self.log.failure("Archive: uploading {file} failed", failure,
                         file=recording.wav or recording.sidecar)
        self._backlog.give_back(recording)
        self._pause()

    def _pause(self) -> None:
        if self._retry is not None or not self._running:
            return
        self._failures += 1
        self._retry = self.reactor.callLater(retry_delay(self._failures), self._resume)

    def _resume(self) -> None:
        self._retry = None
        self._pump()

    def sweep_local_copies(self) -> Deferred[list[str]]:
        """Delete the local WAVs verified in the store whose keep_local_days
        is over (their sidecars stay), and the objects retention removed
        that the store refused to delete before."""
        before = self.reactor.seconds() - self.keep_local_days * 86400
        self._run(journal.marked_for_deletion, self.root).addCallback(
            self._delete_objects).addErrback(
                self._disk_failed, "Archive: reading the deletions owed failed: {reason} "
                                   "(tried again at the next sweep)")
        return self._run(_delete_local_copies, self.root, before).addCallbacks(
            self._swept, self._sweep_failed)

    def _sweep_failed(self, failure: Failure) -> list[str]:
        # (Logged, and the sweeps go on: the next may well succeed.)
        self._disk_failed(failure, "Archive: deleting the local copies due failed: {reason}")
        return []

    def _swept(self, deleted: list[str]) -> list[str]:
        if deleted:
            self.log.info("Archive: {count} local copies deleted (verified in {url}, older "
                          "than {days} days)", count=len(deleted), url=self.location.url,
                          days=self.keep_local_days)
            self.metrics.archive_local_copies_deleted(len(deleted))
        return deleted

    def forget(self, relative_paths: list[str]) -> Deferred[None]:
        """Retention removed these files (WAVs and sidecars, under root):
        their objects are marked for deletion in the journal (durably), then
        deleted; what the store refuses now is deleted by a later sweep."""
        self._backlog.removed(relative_paths)
        return self._run(journal.mark_for_deletion, self.root, relative_paths).addCallbacks(
            self._delete_objects, self._disk_failed,
            errbackArgs=("Archive: marking {count} removed files for deletion failed: "
                         "{reason} (their objects stay in the archive)",),
            errbackKeywords={"count": len(relative_paths)})

    def holds_local_copy(self, path: str) -> bool:
        """Whether the store holds the WAV at ``path`` as it is on the disk,
        verified (its local copy can go). Blocking."""
        return journal.holds_local_copy(self.root, path)

    def _delete_objects(self, marked: list[tuple[str, str]]) -> Deferred[None]:
        if not marked:
            return succeed(None)
        return self._run(_delete_objects, self.store, self.root, marked).addCallbacks(
            lambda _: self.log.info("Archive: {count} objects deleted from {url} (retention)",
                                    count=len(marked), url=self.location.url),
            lambda failure: self.log.warn(
                "Archive: deleting {count} objects that retention removed from {url} "
                "failed: {reason} (tried again at the next sweep)", count=len(marked),
                url=self.location.url, reason=failure.getErrorMessage()))


def _reason(error: BaseException) -> str:
    """What went wrong, for the log: the OS's words for a disk error."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror} ({error.filename})" if error.filename else error.strerror
    return str(error)


def _look(root: str) -> list[WaitingRecording]:
    """The start-up look, with the journal's room on a full disk kept."""
    journal.keep_reserve(root)
    return journal.waiting_recordings(root)


def _delete_local_copy(root: str, relative_path: str, local: Any) -> bool:
    deleted = journal.delete_local_copy(root, relative_path, local)
    if deleted:
        journal.keep_reserve(root)  # (the room it freed, when the disk was full)
    return deleted


def _delete_local_copies(root: str, finished_before: float) -> list[str]:
    deleted = journal.delete_local_copies(root, finished_before)
    if deleted:
        journal.keep_reserve(root)
    return deleted


def _delete_objects(store: IObjectStore, root: str, marked: list[tuple[str, str]]) -> None:
    for _, key in marked:
        store.delete(key)
    journal.forget(root, [relative for relative, _ in marked])


@attrs.define
class NoArchive:
    """The archive of a server without one (no archive.url): told what
    Archive is, and does nothing."""

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> None:
        pass

    def file_finished(self, wav_path: str, summary: RecordingSummary) -> None:
        pass

    def forget(self, relative_paths: list[str]) -> Deferred[None]:
        return succeed(None)

    def status(self, now: float | None = None) -> ArchiveStatus | None:
        return None
