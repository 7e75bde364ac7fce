"""One recording's life: recording -> stopping -> stopped.

Every way a recording ends (the phone's Stop, a lost connection, a write
error, no RTP, shutdown) goes through `Recording.stop`, which is idempotent
and gives each caller its own Deferred for the finished recording's summary.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import Interface

from recsvc.control.interfaces import IPhoneLink
from recsvc.media.lane import FastLane
from recsvc.logs import Logger
from recsvc.media.pipeline import MediaPipeline
from recsvc.media.ports import RtpPort
from recsvc.media.rtp import RtpPacket
from recsvc.media.source import Address
from recsvc.storage.folder import Storage
from recsvc.storage.parts import (
    BY_CONNECTION,
    BY_PHONE,
    BY_SERVER,
    RecordingFiles,
    RunBlocking,
    StopCause,
    Part,
)
from recsvc.summary import MediaStats, RecordingInfo, RecordingSummary
from recsvc.storage.wav import AudioWriter

# Who ended a recording (BY_PHONE, BY_SERVER, BY_CONNECTION) and why
# (StopCause) are the sidecar's words: they live with the files, and are
# named here too for the recording's callers.
__all__ = [
    "BY_CONNECTION", "BY_PHONE", "BY_SERVER", "RECORDING", "STOPPING", "STOPPED",
    "IRecordingEvents", "Limits", "Recording", "RecordingContext", "RunBlocking", "StopCause",
]

RECORDING = "recording"
STOPPING = "stopping"
STOPPED = "stopped"


@attrs.frozen
class Limits:
    """When the server ends a recording, or a file, by itself (seconds)."""

    first_packet_timeout: float = 10.0
    timeout: float = 60.0
    max_duration: float = 4 * 3600.0
    # Audio held in memory while the disk is slow, at most (seconds).
    max_buffer_s: float = 30.0


@attrs.frozen
class RecordingContext:
    """What a recording is given by the recorder, as all its recordings
    are: where their files go and the threads that write them, the clocks,
    the limits (built for each Start from the recorder's current ones)."""

    storage: Storage
    clock: IReactorTime
    # The recordings' file work: hand-overs, sidecars, new files.
    run_blocking: RunBlocking
    # Finishing a stopped recording's files (None: run_blocking).
    run_finishing: RunBlocking | None = None
    limits: Limits = Limits()
    # Arrival times come from a monotonic clock (a wall-clock step must not
    # look like a pause in the RTP); None means the reactor's clock.
    now: Callable[[], float] | None = None


class IRecordingEvents(Interface):
    """What a Recording tells the one that runs it (the recorder, which
    answers for each recording through one of these), and the one thing it
    asks of it: its next file. Called on the reactor thread, but for
    ``open_part``."""

    def open_part(number: int) -> AudioWriter:
        """Create the recording's file ``number`` and return its writer.
        A recording asks for its further files (2 and on, one each
        max_duration), blocking, in a thread of its context's run_blocking;
        its first comes from whoever builds it (``first_file``)."""

    def started(recording: Recording) -> None:
        """Its first file exists (the Start's sidecar is on its way)."""

    def file_finished(recording: Recording, path: str, summary: RecordingSummary) -> None:
        """A file of it is finished and its sidecar written."""

    def file_kept(recording: Recording, path: str, summary: RecordingSummary) -> None:
        """A file of it could not be finished cleanly (its close failed)
        but is on disk with what it holds, its sidecar written and naming
        the error: the recording will fail, the file is still a recording's."""

    def stopped(recording: Recording) -> None:
        """It has stopped, its files finished (``outcome``) or not."""


@attrs.define(eq=False, repr=False)
class Recording:
    """A call being recorded: takes RTP packets, writes audio, stops once."""

    log = Logger()

    info: RecordingInfo
    started_at: float
    # Its first file, or the file being created off the reactor: the phone
    # is answered at once and its audio waits meanwhile.
    _first_file: AudioWriter | Deferred[AudioWriter] = attrs.field(alias="first_file")
    # Read through _caught_up(), which hands in its fast lane first; but
    # for what the lane cannot hold back (the encoder, whether a packet was
    # admitted, the count of junk) and the files' sidecars (a file may end
    # while the lane is being handed in: they take the stats as they are).
    _pipeline: MediaPipeline = attrs.field(alias="media")
    _context: RecordingContext = attrs.field(alias="context")
    _events: IRecordingEvents = attrs.field(alias="events")
    link: IPhoneLink | None = None
    port: RtpPort | None = None
    # Where the port's reader puts the packets that only continue the
    # stream (see recsvc.media.lane); None: every packet comes to packet_received.
    lane: FastLane | None = None
    # Which of the recorder's hand-over turns is this recording's (see
    # recsvc.storage.syncing.SyncTurns, which sets it).
    sync_turn: int = attrs.field(init=False, default=0)
    _state: str = attrs.field(init=False, default=RECORDING)
    # The context's, read on every packet or timeout.
    _clock: IReactorTime = attrs.field(init=False)
    _limits: Limits = attrs.field(init=False)
    _now: Callable[[], float] | None = attrs.field(init=False)
    # Its files: the audio waiting for the disk, the parts, the sidecars.
    _files: RecordingFiles = attrs.field(init=False)
    # _files.write, bound once: the packet path calls it directly.
    _write: Callable[[list[bytes]], None] = attrs.field(init=False)
    _waiting_read: bool = attrs.field(init=False, default=False)
    _timeout_call: IDelayedCall | None = attrs.field(init=False, default=None)
    _waiting: list[Deferred] = attrs.field(init=False, factory=list)
    _result: RecordingSummary | Failure | None = attrs.field(init=False, default=None)
    _stop: StopCause | None = attrs.field(init=False, default=None)
    _rtp_port: int | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        context = self._context
        self._clock, self._limits, self._now = context.clock, context.limits, context.now
        if self.port is not None:
            self._rtp_port = self.port.getHost().port
        first = self._first_file
        writer = None if isinstance(first, Deferred) else first
        # Per recording, not per packet: bytes a tick, ticks a file, bytes
        # that may wait for the disk.
        rate = self.info.codec.clock_rate
        per_tick = self._pipeline.encoder.bytes_per_tick
        self._files = RecordingFiles(
            info=self.info, storage=context.storage, run_blocking=context.run_blocking,
            clock=self._clock, stats=self._pipeline.stats, failed=self._failed,
            started=self._started, file_finished=self._file_finished,
            file_kept=self._file_kept,
            part=Part(1, writer, self.started_at, 0),
            per_tick=per_tick,
            part_limit=int(self._limits.max_duration * rate),
            pending_limit=int(self._limits.max_buffer_s * rate * per_tick),
            open_part=self._events.open_part, run_finishing=context.run_finishing,
            rtp_port=self._rtp_port,
        )
        self._write = self._files.write

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
        # The lane takes packets only after one was admitted.
        return self._pipeline.last_admitted is not None

    def progress(self) -> MediaStats:
        """How its RTP has arrived so far (the packets waiting in its fast
        lane taken in first)."""
        return self._caught_up().stats()

    @property
    def sync_files(self) -> bool:
        """Whether every other hand-over also fdatasyncs the file; False when
        the service makes the whole filesystem durable at once instead."""
        return self._files.sync_files

    @sync_files.setter
    def sync_files(self, value: bool) -> None:
        self._files.sync_files = value

    @property
    def bytes_in_open_file(self) -> int:
        """Audio bytes written so far to the file it is recording into."""
        return self._files.bytes_in_open_file

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
        first = self._first_file
        self._files.begin(first if isinstance(first, Deferred) else None)
        self._timeout_call = self._clock.callLater(
            self._limits.first_packet_timeout, self._check_timeout
        )

    def packet_received(self, packet: RtpPacket, source: Address) -> None:
        """An RTP packet arrived on this recording's port."""
        if self._state != RECORDING:
            return
        media = self._caught_up(True)
        self._write(media.packet(packet, source, self._arrival_time()))
        if self.lane is not None:
            self.lane.arm(media.expected() if self._state == RECORDING else None)

    def _caught_up(self, taking: bool = False) -> MediaPipeline:
        """Its media pipeline, with what the fast lane took handed in (and
        its audio written) first: the one way to media state the lane may
        be holding back, so no reader can forget the lane. The lane is
        taken in while it records, or when ``taking`` says so (the packet
        path, which has checked that it records, and the close)."""
        lane = self.lane
        if lane is not None and lane.count and (taking or self._state == RECORDING):
            count, payload, arrivals = lane.take()
            self._write(self._pipeline.continued(count, payload, arrivals))
        return self._pipeline

    def datagram_invalid(self) -> None:
        """Something that is not RTP arrived on this recording's port."""
        self._pipeline.invalid()

    def _arrival_time(self) -> float:
        return self._clock.seconds() if self._now is None else self._now()

    def sync(self) -> Deferred[Any] | None:
        """Hand the audio recorded since the last sync to the file, off the
        reactor thread, and to the disk (unless ``sync_files`` is off: the
        service then makes the whole filesystem durable at once). Called
        every storage.sync_interval, so the file on disk is never further
        behind. Returns the hand-over under way, if any."""
        if self._state == RECORDING:
            self._caught_up()
            started = self._files.store()
            if started is not None:
                # Even if it is done already (a runner that runs at once):
                # the caller must know audio was handed over.
                return started
        return self._files.storing

    def _failed(self, reason: str) -> None:
        """Its files cannot go on: it stops (the phone is told)."""
        # _finish logs what goes wrong; nobody else waits on this one.
        self.stop(reason, BY_SERVER).addErrback(lambda failure: None)

    def _started(self) -> None:
        try:
            self._events.started(self)
        except Exception:
            self.log.failure("Recording {recordingId}: reporting its start failed",
                             recordingId=self.recording_id)

    def _file_finished(self, path: str, summary: RecordingSummary) -> None:
        self._events.file_finished(self, path, summary)

    def _file_kept(self, path: str, summary: RecordingSummary) -> None:
        self._events.file_kept(self, path, summary)

    def _check_timeout(self) -> None:
        self._timeout_call = None
        if self._state != RECORDING:
            return
        last = self._caught_up().last_admitted
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
            self._files.info = self.info
        self._waiting.append(waiter)
        if self._state == RECORDING and not self._waiting_read:
            # Audio already in the socket belongs to the call. Reading it may
            # itself stop the recording (a write error): hence the flag.
            self._waiting_read = True
            if self.port is not None:
                self.port.read_waiting()
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
            self._events.stopped(self)
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
        self._write(self._caught_up(True).flush())
        return await self._files.finish(cause)


def _fire(waiter: Deferred, result: RecordingSummary | Failure) -> None:
    if isinstance(result, Failure):
        waiter.errback(result)
    else:
        waiter.callback(result)
