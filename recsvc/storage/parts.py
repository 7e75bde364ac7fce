"""A recording's files: the parts it is written in, the audio waiting for
the disk, their sidecars."""

from __future__ import annotations

import os
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from recsvc.logs import Logger
from recsvc.storage.folder import FileKeptWithError, Storage, StorageError
from recsvc.storage.wav import AudioWriter
from recsvc.summary import MediaStats, RecordingInfo, RecordingSummary

# Who ended a recording, as the sidecar's stopped_by says.
BY_PHONE = "phone"
BY_SERVER = "server"
BY_CONNECTION = "connection"

RunBlocking = Callable[..., Deferred]
OpenPart = Callable[[int], AudioWriter]  # part number -> the writer of that file


@attrs.frozen
class StopCause:
    reason: str
    stopped_by: str
    at: float


@attrs.define(eq=False)
class Part:
    """One file of the recording."""

    number: int
    writer: AudioWriter | None  # None while the file is being created
    started_at: float
    start_ticks: int  # where in the recording's timeline the file begins
    previous: str | None = None
    ticks: int = 0  # how much of the timeline the file holds
    # Audio not yet handed to the writer (which works in a thread), and the
    # hand-over under way, if any: one at a time, in order.
    pending: bytearray = attrs.field(factory=bytearray)
    storing: Deferred[Any] | None = None
    # The sidecar written when the file began: the final one must come after.
    provisional: Deferred[Any] | None = None
    opening: Deferred[Any] | None = None  # the file being created, off the reactor


def _store(writer: AudioWriter, data: bytes, durable: bool) -> None:
    """Hand audio to the file. Blocking: runs in a thread."""
    writer.write(data)
    writer.sync(durable)


@attrs.define(eq=False)
class RecordingFiles:
    """A recording's files: the audio waiting for the disk (at most
    ``max_buffer_s`` of it, handed over off the reactor, one hand-over at a
    time), a new file every ``max_duration``, each file's sidecars (the
    provisional one when it begins, the final one when it is finished)."""

    log = Logger()

    # The recording's; the recording keeps it current (a Stop's parties).
    info: RecordingInfo
    _storage: Storage
    _run_blocking: RunBlocking
    _clock: IReactorTime
    # The media so far, for the sidecars (read as it is: the recording's
    # lane may be being taken in when a file ends).
    _stats: Callable[[], MediaStats]
    # The recording must stop (by the server, for this reason).
    _failed: Callable[[str], None]
    # Its first file exists.
    _started: Callable[[], None]
    # Each file, once finished and its sidecar written: its path and sidecar.
    _file_finished: Callable[[str, RecordingSummary], None]
    # Each file that could not be finished cleanly yet is on disk with its
    # sidecar (which names the error): its path and sidecar.
    _file_kept: Callable[[str, RecordingSummary], None]
    _part: Part
    # Creates the recording's next file (blocking: run on run_blocking).
    _open_part: OpenPart
    _per_tick: int  # bytes a tick
    _part_limit: int  # ticks a file
    _pending_limit: int  # bytes that may wait for the disk
    run_finishing: RunBlocking | None = None
    sync_files: bool = True
    _rtp_port: int | None = None
    _finishing_parts: list[Deferred[Any]] = attrs.field(factory=list)
    _write_error: OSError | None = None
    _overflow_ticks: int = 0  # audio dropped because the disk did not keep up

    @property
    def bytes_in_open_file(self) -> int:
        """Audio bytes written so far to the file it is recording into."""
        writer = self._part.writer
        return 0 if writer is None else writer.data_bytes

    @property
    def storing(self) -> Deferred[Any] | None:
        """The hand-over under way, if any."""
        return self._part.storing

    def begin(self, opening: Deferred[AudioWriter] | None) -> None:
        """The first file's provisional sidecar, once the file exists (now,
        or when ``opening`` fires)."""
        part = self._part
        if part.writer is not None:
            part.provisional = self._save_provisional(part)
            self._started()
        elif opening is not None:
            part.opening = opening
            part.opening.addCallbacks(self._part_opened, self._part_failed, (part,),
                                      errbackArgs=(part,))

    def write(self, chunks: list[bytes]) -> None:
        """Audio for the files (on the reactor: it waits for the next hand-over)."""
        per_tick, limit = self._per_tick, self._part_limit
        for chunk in chunks:
            while chunk:
                if self._write_error is not None:
                    return
                part = self._part
                if part.ticks >= limit:
                    self._next_part()
                    part = self._part
                room = (limit - part.ticks) * per_tick
                if len(chunk) <= room:
                    piece, chunk = chunk, b""
                else:  # the file ends inside this chunk
                    piece, chunk = chunk[:room], chunk[room:]
                if len(part.pending) + len(piece) > self._pending_limit:
                    self._overflow(len(piece) // per_tick)
                    continue
                part.pending += piece
                part.ticks += len(piece) // per_tick

    def _overflow(self, ticks: int) -> None:
        """The disk has not taken the audio of the last max_buffer_s: what
        does not fit is dropped, counted, reported (logged once)."""
        if not self._overflow_ticks:
            self.log.error(
                "Recording {recordingId}: the disk is not keeping up; dropping audio",
                recordingId=self.info.recording_id, device=self.info.device,
                reason="disk too slow",
            )
        self._overflow_ticks += ticks

    def store(self) -> Deferred[Any] | None:
        """Hand the audio waiting to the file, off the reactor thread: the
        hand-over started, or None (nothing waits, or one is under way)."""
        return self._store(self._part)

    def _store(self, part: Part) -> Deferred[Any] | None:
        if part.writer is None or part.storing is not None or not part.pending:
            return None
        if self._write_error is not None:
            return None
        # The buffer itself goes to the thread (no copy); a new one fills.
        data, part.pending = part.pending, bytearray()
        storing = part.storing = self._run_blocking(_store, part.writer, data, self.sync_files)
        storing.addCallbacks(self._stored, self._store_failed, (part,), errbackArgs=(part,))
        return storing

    def _stored(self, result: object, part: Part) -> None:
        part.storing = None

    def _store_failed(self, failure: Failure, part: Part) -> None:
        part.storing = None
        if failure.check(OSError):
            self._write_failed(failure.value)
        else:
            self.log.failure("Recording {recordingId}: storing audio failed", failure,
                             recordingId=self.info.recording_id)

    def _write_failed(self, error: OSError, failed: str = "write error") -> None:
        self._write_error = error
        self.log.error(
            "Recording {recordingId} {failed}: {reason}",
            recordingId=self.info.recording_id, device=self.info.device, failed=failed,
            reason=error.strerror or str(error),
        )
        self._failed(f"{failed}: {error.strerror or error}")

    def _next_part(self) -> None:
        """The file is as long as a file may be: go on in a new one (opened
        when there is audio for it, so no part is ever empty)."""
        done = self._part
        assert done.writer is not None
        now = self._clock.seconds()
        part = self._part = Part(
            done.number + 1, None, now, done.start_ticks + done.ticks,
            previous=os.path.basename(done.writer.path),
        )
        # The new file is created off the reactor; its audio waits meanwhile.
        part.opening = self._run_blocking(self._open_part, part.number)
        part.opening.addCallbacks(self._part_opened, self._part_failed, (part,), errbackArgs=(part,))
        cause = StopCause("max duration", BY_SERVER, now)
        finishing = Deferred.fromCoroutine(
            self._finish_rotated(done, part, cause, self._stats())
        )
        finishing.addErrback(self._log_storage_failure)
        self._finishing_parts.append(finishing)

    def _part_opened(self, writer: AudioWriter, part: Part) -> None:
        part.writer = writer
        part.provisional = self._save_provisional(part)
        if part.number == 1:
            self.log.info(
                "Recording {recordingId} records to {file} ({createMs} ms after its Start)",
                recordingId=self.info.recording_id, file=os.path.basename(writer.path),
                createMs=round(1000 * (self._clock.seconds() - part.started_at), 1),
            )
            self._started()
            return
        self.log.info(
            "Recording {recordingId} goes on in part {part}: {file}",
            recordingId=self.info.recording_id, part=part.number,
            file=os.path.basename(writer.path),
        )

    def _part_failed(self, failure: Failure, part: Part) -> None:
        # Settled: the stop below must not wait for it (it is still running
        # this errback, and awaiting a Deferred that holds a failure mid-run
        # raised an AssertionError instead of the StorageError naming why).
        part.opening = None
        if failure.check(OSError):
            self._write_failed(failure.value, "storage not writable" if part.number == 1
                               else "write error")
        else:
            self.log.failure("Recording {recordingId}: part {part} could not be created",
                             failure, recordingId=self.info.recording_id, part=part.number)
            # Its audio has nowhere to go: the phone is told.
            self._failed("internal error")

    async def _finish_rotated(
        self, done: Part, following: Part, cause: StopCause, stats: MediaStats
    ) -> RecordingSummary:
        """Finish a full file once the next one exists (its sidecar names it)."""
        if following.opening is not None:
            await following.opening
        next_file = None if following.writer is None else os.path.basename(following.writer.path)
        return await self._finish_part(done, cause, next_file, stats)

    async def finish(self, cause: StopCause) -> RecordingSummary | Failure:
        """Once the earlier files are finished, finish the last one with the
        audio still waiting: its sidecar, or why it could not be finished."""
        for earlier in self._finishing_parts:
            if earlier is not None:
                try:
                    await earlier
                except Exception as error:
                    self.log.warn("Recording {recordingId}: an earlier sidecar failed: {reason}",
                                  recordingId=self.info.recording_id, reason=str(error))
        try:
            return await self._finish_part(self._part, cause, None, self._stats())
        except Exception:
            return self._log_storage_failure(Failure())

    async def _finish_part(
        self, part: Part, cause: StopCause, next_file: str | None, stats: MediaStats
    ) -> RecordingSummary:
        """Wait for the file to exist, the hand-over under way and the file's
        first sidecar, then finish it with the rest of its audio, in a thread."""
        if part.opening is not None:
            await part.opening
        if part.writer is None:
            cause = "" if self._write_error is None else (
                f": {self._write_error.strerror or self._write_error}")
            raise StorageError(f"part {part.number} of the recording could not be created{cause}")
        if part.storing is not None:
            try:
                await part.storing
            except Exception:
                pass  # already reported by _store_failed
        if part.provisional is not None:
            try:
                await part.provisional
            except Exception as error:
                self.log.warn("Recording {recordingId}: its first sidecar failed: {reason}",
                              recordingId=self.info.recording_id, reason=str(error))
        data = bytes(part.pending)
        part.pending.clear()
        finish = self.run_finishing or self._run_blocking
        try:
            summary = await finish(self._finish_files, part, cause, next_file, stats, data)
        except FileKeptWithError as kept:
            self._report(self._file_kept, part.writer.path, kept.summary)
            raise
        self._report(self._file_finished, part.writer.path, summary)
        return summary

    def _report(self, event: Callable[[str, RecordingSummary], None], path: str,
                summary: RecordingSummary) -> None:
        try:
            event(path, summary)
        except Exception:
            self.log.failure("Recording {recordingId}: reporting its file {file} failed",
                             recordingId=self.info.recording_id, file=summary.file)

    def _log_storage_failure(self, failure: Failure) -> Failure:
        self.log.error(
            "Recording {recordingId} could not be finished: {reason}",
            recordingId=self.info.recording_id, device=self.info.device,
            reason=failure.getErrorMessage(),
        )
        return failure

    def _save_provisional(self, part: Part) -> Deferred[Any]:
        summary = self._summary(part, None, None, None, self._stats())
        # Made durable with the audio: by its own fsyncs when each file is
        # synced, else by the service's next sync of the filesystem (a crash
        # before it loses the sidecar with that audio; recovery copes).
        return self._run_blocking(self._storage.write_sidecar, part.writer.path,
                                  summary.to_json(), self.sync_files)

    def _summary(
        self, part: Part, cause: StopCause | None, error: OSError | None,
        next_file: str | None, stats: MediaStats,
    ) -> RecordingSummary:
        """The sidecar of one file. ``stats`` is taken on the reactor thread
        (this may run in a thread); counts are for the whole recording so far,
        offsets are within this file."""
        fmt = self._storage.wav_format(self.info.codec)
        data_bytes = part.writer.data_bytes if cause is not None else 0
        return RecordingSummary(
            info=self.info,
            audio_format=self._storage.audio_format,
            file=os.path.basename(part.writer.path),
            started_at=part.started_at,
            stopped_at=None if cause is None else cause.at,
            stop_reason="" if cause is None else cause.reason,
            stopped_by="" if cause is None else cause.stopped_by,
            data_bytes=data_bytes,
            frames=data_bytes // fmt.block_align,
            sample_rate=fmt.sample_rate,
            stats=stats.within(
                part.start_ticks / self.info.codec.clock_rate,
                None if next_file is None else part.ticks / self.info.codec.clock_rate,
            ),
            rtp_port=self._rtp_port,
            error=None if error is None else f"{error.strerror or error}",
            part=part.number,
            previous=part.previous,
            next=next_file,
            overflow_ms=round(1000 * self._overflow_ticks / self.info.codec.clock_rate, 3),
        )

    def _finish_files(
        self, part: Part, cause: StopCause, next_file: str | None, stats: MediaStats,
        data: bytes,
    ) -> RecordingSummary:
        """Close a file, then write its sidecar. Blocking: runs in a thread.

        A write that fails now, like one that failed before, leaves a
        finished file with what it has (the sidecar names the error); only a
        file that cannot be closed is a StorageError: FileKeptWithError if
        it is there all the same, with its sidecar."""
        error = self._write_error if next_file is None else None
        try:
            if data and self._write_error is None:
                part.writer.write(data)
        except OSError as write_error:
            error = write_error
        close_error = None
        try:
            part.writer.close()
        except OSError as failed:
            close_error = failed
        summary = self._summary(part, cause, error or close_error, next_file, stats)
        # A recording that never had audio (its phone sent no RTP) keeps
        # its sidecar, which says so, but not an empty WAV: a client making
        # Starts it never means to use cannot fill the disk with them. (A
        # file with an error stays, for the sidecar that names it.)
        silent = (part.number == 1 and next_file is None and part.writer.data_bytes == 0
                  and error is None and close_error is None)
        if silent:
            summary = attrs.evolve(summary, file=None)
        self._storage.write_sidecar(part.writer.path, summary.to_json())
        if silent:
            self._storage.remove_audio(part.writer.path)
        if close_error is not None and close_error is not error:
            message = f"could not finish {summary.file}: {summary.error}"
            if self._storage.has_audio(part.writer.path):
                raise FileKeptWithError(message, summary)
            raise StorageError(message)
        return summary
