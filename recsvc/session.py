"""One recording's life (recording -> stopping -> stopped) and the registry by id.

Every way a recording ends (the phone's Stop, a lost connection, a write
error, shutdown) goes through `Recording.stop`, which is idempotent and gives
each caller its own Deferred for the finished recording's summary.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator, Protocol

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from recsvc.codec import Codec
from recsvc.ports import RtpPort
from recsvc.protocol.commands import CallParties
from recsvc.rtp import ReorderWindow, RtpPacket
from recsvc.storage import Storage, StorageError
from recsvc.wav import AudioWriter

# Who ended a recording, as the sidecar's stopped_by says.
BY_PHONE = "phone"
BY_SERVER = "server"
BY_CONNECTION = "connection"

RECORDING = "recording"
STOPPING = "stopping"
STOPPED = "stopped"

RunBlocking = Callable[..., Deferred]


class PhoneLink(Protocol):
    """The control connection a recording answers to."""

    def send_stop_request(self, recording_id: str, reason: str) -> None:
        """Tell the phone the server has stopped this recording."""

    def disconnect(self) -> None:
        """Close the connection (the service is shutting down)."""


@attrs.frozen
class RecordingInfo:
    """What the phone told us at Start, plus where it called from."""

    recording_id: str
    device: str
    codec: Codec
    direction: str
    parties: CallParties
    peer: str  # the phone's IP, from its control connection


@attrs.frozen
class PacketCounts:
    received: int = 0  # written to the file
    lost: int = 0  # sequence numbers never seen
    late: int = 0
    duplicates: int = 0
    rejected: int = 0  # valid RTP of another payload type (comfort noise, DTMF...)
    invalid: int = 0  # not RTP at all


@attrs.frozen
class RecordingSummary:
    """The finished recording, as its sidecar describes it."""

    info: RecordingInfo
    audio_format: str
    file: str
    started_at: float
    stopped_at: float | None  # None while recording
    stop_reason: str
    stopped_by: str
    data_bytes: int
    frames: int
    sample_rate: int
    packets: PacketCounts
    rtp_port: int | None
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return round(self.frames / self.sample_rate, 3)

    def to_json(self) -> dict[str, Any]:
        info = self.info
        data: dict[str, Any] = {
            "id": info.recording_id,
            "device": info.device,
            "codec": info.codec.name,
            "format": self.audio_format,
            "direction": info.direction,
            **attrs.asdict(info.parties),
            "status": "recording" if self.stopped_at is None else "finished",
            "started_at": iso_utc(self.started_at),
            "stopped_at": None if self.stopped_at is None else iso_utc(self.stopped_at),
            "duration_s": self.duration_s,
            "stop_reason": self.stop_reason,
            "stopped_by": self.stopped_by,
            **{f"packets_{name}": value for name, value in attrs.asdict(self.packets).items()},
            "bytes": self.data_bytes,
            "sample_rate": self.sample_rate,
            "file": self.file,
            "peer": info.peer,
            "rtp_port": self.rtp_port,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def iso_utc(seconds: float) -> str:
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


@attrs.define(eq=False)
class Recording:
    """A call being recorded: takes RTP packets, writes audio, stops once."""

    log = Logger()

    info: RecordingInfo
    started_at: float
    _writer: AudioWriter
    _storage: Storage
    _clock: IReactorTime
    _run_blocking: RunBlocking
    _transcode: Callable[[bytes], bytes] | None = None
    _on_stopped: Callable[[Recording], None] = lambda recording: None
    link: PhoneLink | None = None
    port: RtpPort | None = None
    _window: ReorderWindow = attrs.field(factory=ReorderWindow)
    _state: str = RECORDING
    _received: int = 0
    _rejected: int = 0
    _invalid: int = 0
    _write_error: OSError | None = None
    _drained: bool = False
    _waiting: list[Deferred] = attrs.field(factory=list)
    _result: RecordingSummary | Failure | None = None
    _stop: _StopCause | None = None
    _provisional: Deferred[Any] | None = None
    _rtp_port: int | None = None

    @property
    def recording_id(self) -> str:
        return self.info.recording_id

    @property
    def state(self) -> str:
        return self._state

    def __attrs_post_init__(self) -> None:
        if self.port is not None:
            self._rtp_port = self.port.getHost().port

    @property
    def rtp_port(self) -> int | None:
        return self._rtp_port

    def counts(self) -> PacketCounts:
        window = self._window
        return PacketCounts(
            received=self._received,
            lost=window.lost,
            late=window.late,
            duplicates=window.duplicates,
            rejected=self._rejected,
            invalid=self._invalid,
        )

    def packet_received(self, packet: RtpPacket) -> None:
        """An RTP packet arrived on this recording's port."""
        if self._state != RECORDING:
            return
        if packet.payload_type != self.info.codec.payload_type:
            self._rejected += 1
            return
        self._write(self._window.push(packet))

    def datagram_invalid(self) -> None:
        """Something that is not RTP arrived on this recording's port."""
        self._invalid += 1

    def _write(self, packets: list[RtpPacket]) -> None:
        for packet in packets:
            if self._write_error is not None:
                return
            payload = packet.payload
            if self._transcode is not None:
                payload = self._transcode(payload)
            try:
                self._writer.write(payload)
            except OSError as error:
                self._write_error = error
                self.log.error(
                    "Recording {recordingId} write failed: {reason}",
                    recordingId=self.recording_id, device=self.info.device,
                    reason=error.strerror or str(error),
                )
                # _finish logs what goes wrong; nobody else waits on this one.
                self.stop(f"write error: {error.strerror or error}", BY_SERVER).addErrback(
                    lambda failure: None
                )
                return
            self._received += 1

    def begin(self) -> None:
        """Persist what the phone told us at Start, as a sidecar marked
        ``recording``, so the call's metadata survives whatever follows."""
        self._provisional = self._run_blocking(
            self._storage.write_sidecar, self._writer.path, self._summary(None).to_json()
        )

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
            self._state = STOPPING
            self._stop = _StopCause(reason, stopped_by, self._clock.seconds())
            Deferred.fromCoroutine(self._finish())
        return waiter

    async def _finish(self) -> None:
        try:
            result = await self._close_and_save()
        except Exception:
            result = Failure()
            self.log.failure("Recording {recordingId} could not be finished",
                             recordingId=self.recording_id)
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
        self._write(self._window.flush())
        if self._provisional is not None:
            try:
                await self._provisional
            except Exception as error:
                self.log.warn("Recording {recordingId}: start sidecar not written: {reason}",
                              recordingId=self.recording_id, reason=str(error))
        try:
            return await self._run_blocking(self._finish_files)
        except Exception:
            failure = Failure()
            self.log.error(
                "Recording {recordingId} could not be finished: {reason}",
                recordingId=self.recording_id, device=self.info.device,
                reason=failure.getErrorMessage(),
            )
            return failure

    def _summary(self, cause: _StopCause | None, error: OSError | None = None) -> RecordingSummary:
        fmt = self._storage.wav_format(self.info.codec)
        data_bytes = self._writer.data_bytes if cause is not None else 0
        return RecordingSummary(
            info=self.info,
            audio_format=self._storage.audio_format,
            file=os.path.basename(self._writer.path),
            started_at=self.started_at,
            stopped_at=None if cause is None else cause.at,
            stop_reason="" if cause is None else cause.reason,
            stopped_by="" if cause is None else cause.stopped_by,
            data_bytes=data_bytes,
            frames=data_bytes // fmt.block_align,
            sample_rate=fmt.sample_rate,
            packets=self.counts(),
            rtp_port=self._rtp_port,
            error=None if error is None else f"{error.strerror or error}",
        )

    def _finish_files(self) -> RecordingSummary:
        """Close the WAV, then write the sidecar. Blocking: runs in a thread."""
        error = self._write_error
        try:
            self._writer.close()
        except OSError as close_error:
            error = error or close_error
        summary = self._summary(self._stop, error)
        self._storage.write_sidecar(self._writer.path, summary.to_json())
        if error is not None and error is not self._write_error:
            raise StorageError(f"could not finish {summary.file}: {summary.error}")
        return summary


@attrs.frozen
class _StopCause:
    reason: str
    stopped_by: str
    at: float


def _fire(waiter: Deferred, result: RecordingSummary | Failure) -> None:
    if isinstance(result, Failure):
        waiter.errback(result)
    else:
        waiter.callback(result)


@attrs.define(eq=False)
class Registry:
    """The recordings that are running or stopping, by recording id."""

    _recordings: dict[str, Recording] = attrs.field(factory=dict)

    def add(self, recording: Recording) -> None:
        if recording.recording_id in self._recordings:
            raise KeyError(f"recording {recording.recording_id} exists")
        self._recordings[recording.recording_id] = recording

    def get(self, recording_id: str) -> Recording | None:
        return self._recordings.get(recording_id)

    def remove(self, recording: Recording) -> None:
        if self._recordings.get(recording.recording_id) is recording:
            del self._recordings[recording.recording_id]

    def __iter__(self) -> Iterator[Recording]:
        return iter(list(self._recordings.values()))

    def __len__(self) -> int:
        return len(self._recordings)
