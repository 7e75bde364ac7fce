"""One recording's life (recording -> stopping -> stopped) and the registry by id.

Every way a recording ends (the phone's Stop, a lost connection, a write
error, no RTP, shutdown) goes through `Recording.stop`, which is idempotent
and gives each caller its own Deferred for the finished recording's summary.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from recsvc.control.interfaces import IPhoneLink
from recsvc.devices import device_key
from recsvc.media.lane import FastLane
from recsvc.logs import Logger
from recsvc.media.pipeline import MediaPipeline
from recsvc.media.ports import RtpPort
from recsvc.media.rtp import RtpPacket
from recsvc.media.source import Address
from recsvc.storage.folder import Storage, StorageError
from recsvc.storage.parts import OpenPart, StopCause, _Part, _store
from recsvc.summary import MediaStats, RecordingInfo, RecordingSummary
from recsvc.storage.wav import AudioWriter

# Who ended a recording, as the sidecar's stopped_by says.
BY_PHONE = "phone"
BY_SERVER = "server"
BY_CONNECTION = "connection"

RECORDING = "recording"
STOPPING = "stopping"
STOPPED = "stopped"

RunBlocking = Callable[..., Deferred]


@attrs.frozen
class Limits:
    """When the server ends a recording, or a file, by itself (seconds)."""

    first_packet_timeout: float = 10.0
    timeout: float = 60.0
    max_duration: float = 4 * 3600.0
    # Audio held in memory while the disk is slow, at most (seconds).
    max_buffer_s: float = 30.0


@attrs.define(eq=False, repr=False)
class Recording:
    """A call being recorded: takes RTP packets, writes audio, stops once."""

    log = Logger()

    info: RecordingInfo
    started_at: float
    # The first file; None while it is being created (``opening``).
    _writer: AudioWriter | None
    _storage: Storage
    _media: MediaPipeline
    _clock: IReactorTime
    _run_blocking: RunBlocking
    _limits: Limits = Limits()
    _open_part: OpenPart | None = None
    # The first file being created, off the reactor (when ``writer`` is
    # None): the phone is answered at once and its audio waits meanwhile.
    _opening: Deferred[AudioWriter] | None = None
    _on_stopped: Callable[[Recording], None] = lambda recording: None
    # Once its first file exists (the Start's sidecar on its way to disk).
    _on_started: Callable[[Recording], None] = lambda recording: None
    # Each file, once finished and its sidecar written: its path and sidecar.
    _on_file_finished: Callable[[str, RecordingSummary], None] = lambda path, summary: None
    link: IPhoneLink | None = None
    port: RtpPort | None = None
    # Where the port's reader puts the packets that only continue the
    # stream (see recsvc.media.lane); None: every packet comes to packet_received.
    lane: FastLane | None = None
    # Whether every other hand-over also fdatasyncs the file; False when
    # the service makes the whole filesystem durable at once instead.
    sync_files: bool = True
    # Where its files are finished once stopped (None: run_blocking).
    run_finishing: RunBlocking | None = None
    # Which of the service's hand-over turns is this recording's (see
    # RecorderService.sync_turns).
    sync_turn: int = 0
    _state: str = RECORDING
    _part: _Part = attrs.field(init=False)
    _finishing_parts: list[Deferred[Any]] = attrs.field(factory=list)
    _write_error: OSError | None = None
    _drained: bool = False
    # Arrival times come from a monotonic clock (a wall-clock step must not
    # look like a pause in the RTP); None means the reactor's clock.
    _now: Callable[[], float] | None = None
    _timeout_call: IDelayedCall | None = None
    _waiting: list[Deferred] = attrs.field(factory=list)
    _result: RecordingSummary | Failure | None = None
    _stop: StopCause | None = None
    _rtp_port: int | None = None
    _overflow_ticks: int = 0  # audio dropped because the disk did not keep up
    _per_tick: int = attrs.field(init=False)
    _part_limit: int = attrs.field(init=False)
    _pending_limit: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._part = _Part(1, self._writer, self.started_at, 0)
        # Per recording, not per packet: bytes a tick, ticks a file, bytes
        # that may wait for the disk.
        rate = self.info.codec.clock_rate
        self._per_tick = self._media.encoder.bytes_per_tick
        # Without a way to open further files, the one file goes on.
        self._part_limit = (int(self._limits.max_duration * rate)
                            if self._open_part is not None else sys.maxsize)
        self._pending_limit = int(self._limits.max_buffer_s * rate * self._per_tick)
        if self.port is not None:
            self._rtp_port = self.port.getHost().port

    def __repr__(self) -> str:
        return f"<Recording {self.recording_id!r} {self._state} port={self._rtp_port}>"

    @property
    def recording_id(self) -> str:
        return self.info.recording_id

    @property
    def state(self) -> str:
        return self._state

    @property
    def rtp_port(self) -> int | None:
        return self._rtp_port

    @property
    def media_arrived(self) -> bool:
        """Whether a packet of its call has been admitted: from its source,
        of its payload types and size (stray datagrams do not count)."""
        return self._media.last_admitted is not None

    def progress(self) -> MediaStats:
        """How its RTP has arrived so far (the packets waiting in its fast
        lane taken in first)."""
        if self._state == RECORDING:
            self._take_lane()
        return self._media.stats()

    @property
    def bytes_in_open_file(self) -> int:
        """Audio bytes written so far to the file it is recording into."""
        writer = self._part.writer
        return 0 if writer is None else writer.data_bytes

    @property
    def outcome(self) -> RecordingSummary | Failure | None:
        """Its last file's summary, or why it could not be finished; None
        until it has stopped."""
        return self._result

    @property
    def stop_cause(self) -> StopCause | None:
        """Why, by whom and when it was stopped; None while recording."""
        return self._stop

    def begin(self) -> None:
        """Persist what the phone told us at Start (a sidecar marked
        ``recording``, once the file exists) and start waiting for the
        first RTP packet."""
        part = self._part
        if part.writer is not None:
            part.provisional = self._save_provisional(part)
            self._started()
        elif self._opening is not None:
            part.opening = self._opening
            part.opening.addCallbacks(self._part_opened, self._part_failed, (part,),
                                      errbackArgs=(part,))
        self._timeout_call = self._clock.callLater(
            self._limits.first_packet_timeout, self._check_timeout
        )

    def packet_received(self, packet: RtpPacket, source: Address) -> None:
        """An RTP packet arrived on this recording's port."""
        if self._state != RECORDING:
            return
        self._take_lane()
        self._write(self._media.packet(packet, source, self._arrival_time()))
        if self.lane is not None:
            self.lane.arm(self._media.expected() if self._state == RECORDING else None)

    def _take_lane(self) -> None:
        """Hand what the fast lane took to the media pipeline and the file."""
        if self.lane is not None and self.lane.count:
            count, payload, arrivals = self.lane.take()
            self._write(self._media.continued(count, payload, arrivals))

    def datagram_invalid(self) -> None:
        """Something that is not RTP arrived on this recording's port."""
        self._media.invalid()

    def _arrival_time(self) -> float:
        return self._clock.seconds() if self._now is None else self._now()

    def _write(self, chunks: list[bytes]) -> None:
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
                recordingId=self.recording_id, device=self.info.device, reason="disk too slow",
            )
        self._overflow_ticks += ticks

    def sync(self) -> Deferred[Any] | None:
        """Hand the audio recorded since the last sync to the file, off the
        reactor thread, and to the disk (unless ``sync_files`` is off: the
        service then makes the whole filesystem durable at once). Called
        every storage.sync_interval, so the file on disk is never further
        behind. Returns the hand-over under way, if any."""
        if self._state == RECORDING:
            self._take_lane()
            started = self._store(self._part)
            if started is not None:
                # Even if it is done already (a runner that runs at once):
                # the caller must know audio was handed over.
                return started
        return self._part.storing

    def _store(self, part: _Part) -> Deferred[Any] | None:
        if part.writer is None or part.storing is not None or not part.pending:
            return None
        if self._write_error is not None:
            return None
        # The buffer itself goes to the thread (no copy); a new one fills.
        data, part.pending = part.pending, bytearray()
        storing = part.storing = self._run_blocking(_store, part.writer, data, self.sync_files)
        storing.addCallbacks(self._stored, self._store_failed, (part,), errbackArgs=(part,))
        return storing

    def _stored(self, result: object, part: _Part) -> None:
        part.storing = None

    def _store_failed(self, failure: Failure, part: _Part) -> None:
        part.storing = None
        if failure.check(OSError):
            self._write_failed(failure.value)
        else:
            self.log.failure("Recording {recordingId}: storing audio failed", failure,
                             recordingId=self.recording_id)

    def _write_failed(self, error: OSError, failed: str = "write error") -> None:
        self._write_error = error
        self.log.error(
            "Recording {recordingId} {failed}: {reason}",
            recordingId=self.recording_id, device=self.info.device, failed=failed,
            reason=error.strerror or str(error),
        )
        # _finish logs what goes wrong; nobody else waits on this one.
        self.stop(f"{failed}: {error.strerror or error}", BY_SERVER).addErrback(
            lambda failure: None
        )

    def _next_part(self) -> None:
        """The file is as long as a file may be: go on in a new one (opened
        when there is audio for it, so no part is ever empty)."""
        assert self._open_part is not None
        done = self._part
        assert done.writer is not None
        now = self._clock.seconds()
        part = self._part = _Part(
            done.number + 1, None, now, done.start_ticks + done.ticks,
            previous=os.path.basename(done.writer.path),
        )
        # The new file is created off the reactor; its audio waits meanwhile.
        part.opening = self._run_blocking(self._open_part, part.number)
        part.opening.addCallbacks(self._part_opened, self._part_failed, (part,), errbackArgs=(part,))
        cause = StopCause("max duration", BY_SERVER, now)
        finishing = Deferred.fromCoroutine(
            self._finish_rotated(done, part, cause, self._media.stats())
        )
        finishing.addErrback(self._log_storage_failure)
        self._finishing_parts.append(finishing)

    def _part_opened(self, writer: AudioWriter, part: _Part) -> None:
        part.writer = writer
        part.provisional = self._save_provisional(part)
        if part.number == 1:
            self.log.info(
                "Recording {recordingId} records to {file} ({createMs} ms after its Start)",
                recordingId=self.recording_id, file=os.path.basename(writer.path),
                createMs=round(1000 * (self._clock.seconds() - part.started_at), 1),
            )
            self._started()
            return
        self.log.info(
            "Recording {recordingId} goes on in part {part}: {file}",
            recordingId=self.recording_id, part=part.number, file=os.path.basename(writer.path),
        )

    def _started(self) -> None:
        try:
            self._on_started(self)
        except Exception:
            self.log.failure("Recording {recordingId}: reporting its start failed",
                             recordingId=self.recording_id)

    def _part_failed(self, failure: Failure, part: _Part) -> None:
        # Settled: the stop below must not wait for it (it is still running
        # this errback, and awaiting a Deferred that holds a failure mid-run
        # raised an AssertionError instead of the StorageError naming why).
        part.opening = None
        if failure.check(OSError):
            self._write_failed(failure.value, "storage not writable" if part.number == 1
                               else "write error")
        else:
            self.log.failure("Recording {recordingId}: part {part} could not be created",
                             failure, recordingId=self.recording_id, part=part.number)
            # Its audio has nowhere to go: the phone is told.
            self.stop("internal error", BY_SERVER).addErrback(lambda failure: None)

    async def _finish_rotated(
        self, done: _Part, following: _Part, cause: StopCause, stats: MediaStats
    ) -> RecordingSummary:
        """Finish a full file once the next one exists (its sidecar names it)."""
        if following.opening is not None:
            await following.opening
        next_file = None if following.writer is None else os.path.basename(following.writer.path)
        return await self._finish_part(done, cause, next_file, stats)

    def _check_timeout(self) -> None:
        self._timeout_call = None
        if self._state != RECORDING:
            return
        self._take_lane()
        last = self._media.last_admitted
        if last is None:
            self.stop("no RTP received", BY_SERVER).addErrback(lambda failure: None)
            return
        idle = self._arrival_time() - last
        if idle >= self._limits.timeout:
            self.stop(f"no RTP for {self._limits.timeout:g} s", BY_SERVER).addErrback(
                lambda failure: None
            )
            return
        self._timeout_call = self._clock.callLater(self._limits.timeout - idle, self._check_timeout)

    def stop(
        self, reason: str, stopped_by: str, updates: tuple[tuple[str, str], ...] = ()
    ) -> Deferred[RecordingSummary]:
        """Stop recording and finish the files. Idempotent: every call gets its
        own Deferred, fired with the summary once the WAV and its sidecar are on
        disk (or with a StorageError failure if they could not be finished).
        The first reason wins; a Stop's party fields count whenever they come
        before the files are finished."""
        waiter: Deferred[RecordingSummary] = Deferred()
        if self._state == STOPPED:
            assert self._result is not None
            _fire(waiter, self._result)
            return waiter
        if updates:
            self.info = attrs.evolve(self.info, parties=self.info.parties.updated(updates))
        self._waiting.append(waiter)
        if self._state == RECORDING and not self._drained:
            # Audio already in the socket belongs to the call. Draining may
            # itself stop the recording (a write error): hence the flag.
            self._drained = True
            if self.port is not None:
                self.port.drain()
        if self._state == RECORDING:
            if self.lane is not None:
                self.lane.arm(None)
            self._state = STOPPING
            self._stop = StopCause(reason, stopped_by, self._clock.seconds())
            if self._timeout_call is not None and self._timeout_call.active():
                self._timeout_call.cancel()
            self._timeout_call = None
            Deferred.fromCoroutine(self._finish())
        return waiter

    async def _finish(self) -> None:
        try:
            result = await self._close_and_save()
        except Exception:
            result = Failure()
            self.log.failure("Recording {recordingId} could not be finished",
                             recordingId=self.recording_id)
        if not isinstance(result, Failure):
            assert self._stop is not None
            self.log.info(
                "Recording {recordingId} finished in {files} file(s), {stopMs} ms after "
                "its stop", recordingId=self.recording_id, files=result.part,
                # From the stop to the last file and its sidecar on disk.
                stopMs=round(1000 * (self._clock.seconds() - self._stop.at), 1))
        self._result = result
        self._state = STOPPED
        try:
            self._on_stopped(self)
        finally:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                _fire(waiter, result)

    async def _close_and_save(self) -> RecordingSummary | Failure:
        cause = self._stop
        assert cause is not None
        self.log.info(
            "Recording {recordingId} stopping: {reason} ({stoppedBy})",
            recordingId=self.recording_id, device=self.info.device, reason=cause.reason,
            stoppedBy=cause.stopped_by,
        )
        if cause.stopped_by == BY_SERVER and self.link is not None:
            try:
                self.link.send_stop_request(self.recording_id, cause.reason)
            except Exception:
                self.log.failure("Recording {recordingId}: telling the phone failed",
                                 recordingId=self.recording_id)
        if self.port is not None:
            try:
                await maybeDeferred(self.port.stopListening)
            except Exception:
                self.log.failure("Recording {recordingId}: closing the RTP port failed",
                                 recordingId=self.recording_id)
        self._take_lane()
        self._write(self._media.flush())
        for earlier in self._finishing_parts:
            if earlier is not None:
                try:
                    await earlier
                except Exception as error:
                    self.log.warn("Recording {recordingId}: an earlier sidecar failed: {reason}",
                                  recordingId=self.recording_id, reason=str(error))
        try:
            return await self._finish_part(self._part, cause, None, self._media.stats())
        except Exception:
            return self._log_storage_failure(Failure())

    async def _finish_part(
        self, part: _Part, cause: StopCause, next_file: str | None, stats: MediaStats
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
                              recordingId=self.recording_id, reason=str(error))
        data = bytes(part.pending)
        part.pending.clear()
        finish = self.run_finishing or self._run_blocking
        summary = await finish(self._finish_files, part, cause, next_file, stats, data)
        try:
            self._on_file_finished(part.writer.path, summary)
        except Exception:
            self.log.failure("Recording {recordingId}: reporting its finished file failed",
                             recordingId=self.recording_id)
        return summary

    def _log_storage_failure(self, failure: Failure) -> Failure:
        self.log.error(
            "Recording {recordingId} could not be finished: {reason}",
            recordingId=self.recording_id, device=self.info.device,
            reason=failure.getErrorMessage(),
        )
        return failure

    def _save_provisional(self, part: _Part) -> Deferred[Any]:
        summary = self._summary(part, None, None, None, self._media.stats())
        # Made durable with the audio: by its own fsyncs when each file is
        # synced, else by the service's next sync of the filesystem (a crash
        # before it loses the sidecar with that audio; recovery copes).
        return self._run_blocking(self._storage.write_sidecar, part.writer.path,
                                  summary.to_json(), self.sync_files)

    def _summary(
        self, part: _Part, cause: StopCause | None, error: OSError | None,
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
        self, part: _Part, cause: StopCause, next_file: str | None, stats: MediaStats,
        data: bytes,
    ) -> RecordingSummary:
        """Close a file, then write its sidecar. Blocking: runs in a thread.

        A write that fails now, like one that failed before, leaves a
        finished file with what it has (the sidecar names the error); only a
        file that cannot be closed is a StorageError."""
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
            raise StorageError(f"could not finish {summary.file}: {summary.error}")
        return summary


def _fire(waiter: Deferred, result: RecordingSummary | Failure) -> None:
    if isinstance(result, Failure):
        waiter.errback(result)
    else:
        waiter.callback(result)


@attrs.define(eq=False)
class Registry:
    """The recordings that are running or stopping, by recording id."""

    _recordings: dict[str, Recording] = attrs.field(factory=dict)
    # How many each device has (by recsvc.admission.device_key).
    _by_device: dict[str, int] = attrs.field(factory=dict)

    def add(self, recording: Recording) -> None:
        if recording.recording_id in self._recordings:
            raise KeyError(f"recording {recording.recording_id} exists")
        self._recordings[recording.recording_id] = recording
        key = device_key(recording.info.device)
        self._by_device[key] = self._by_device.get(key, 0) + 1

    def count_of(self, device: str) -> int:
        """The recordings of ``device`` (running or stopping)."""
        return self._by_device.get(device_key(device), 0)

    def get(self, recording_id: str) -> Recording | None:
        return self._recordings.get(recording_id)

    def remove(self, recording: Recording) -> None:
        if self._recordings.get(recording.recording_id) is recording:
            del self._recordings[recording.recording_id]
            key = device_key(recording.info.device)
            count = self._by_device.pop(key, 0)
            if count > 1:
                self._by_device[key] = count - 1

    def __iter__(self) -> Iterator[Recording]:
        return iter(list(self._recordings.values()))

    def __len__(self) -> int:
        return len(self._recordings)
