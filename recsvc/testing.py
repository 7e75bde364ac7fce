"""Fakes shipped with the package, for recsvc's tests and for applications
that embed it: an in-memory WAV writer, a writer that fails, a port pool,
an index that works on the calling thread, a recorder for the control
protocol alone, an object store in memory for the archive."""

from __future__ import annotations

import errno
import threading
from typing import Any, Callable, Mapping

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from zope.interface import implementer

from recsvc.archive.store import IObjectStore, KeyTaken, StoreFailure, StoredObject, sha256_b64
from recsvc.control.commands import FAILED, SUCCESS, StartRequest, StartResponse, StopRequest
from recsvc.control.interfaces import IPhoneLink, IRecorder, UnknownRecording
from recsvc.index.indexer import Indexer
from recsvc.index.store import CaughtUp
from recsvc.media.codec import CODECS
from recsvc.media.ports import NoFreePort
from recsvc.storage.wav import AudioWriter, WavFormat, header_patches, wav_header
from recsvc.summary import MediaStats, RecordingInfo, RecordingSummary


def run_now(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """A `run_blocking` that runs the work at once, on the calling thread."""
    return maybeDeferred(f, *args)


@attrs.define(eq=False)
class MemoryWavWriter:
    """Keeps the WAV file in memory; `contents` is what the file would hold."""

    path: str
    format: WavFormat
    closed: bool = False
    syncs: int = 0
    _data: bytearray = attrs.field(factory=bytearray)

    @property
    def data_bytes(self) -> int:
        return len(self._data)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ValueError("write to a closed writer")
        self._data += data

    def sync(self, durable: bool = True) -> None:
        if self.closed:
            raise ValueError("sync of a closed writer")
        self.syncs += 1

    def close(self) -> None:
        self.closed = True

    def contents(self) -> bytes:
        size = len(self._data)
        header = bytearray(wav_header(self.format).header)
        for offset, value in header_patches(self.format, size):
            header[offset:offset + 4] = value
        return bytes(header) + bytes(self._data) + b"\0" * (size & 1)


@attrs.define(eq=False)
class FailingWriter:
    """Wraps a writer and fails its write number ``fail_at`` (1-based) and
    every one after with ``error`` (ENOSPC unless told otherwise); with
    ``close_error``, closing fails with it after closing the inner writer."""

    inner: AudioWriter
    fail_at: int | None = None
    error: OSError = attrs.field(factory=lambda: OSError(errno.ENOSPC, "No space left on device"))
    close_error: OSError | None = None
    writes: int = 0

    @property
    def path(self) -> str:
        return self.inner.path

    @property
    def data_bytes(self) -> int:
        return self.inner.data_bytes

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.fail_at is not None and self.writes >= self.fail_at:
            raise self.error
        self.inner.write(data)

    def sync(self, durable: bool = True) -> None:
        self.inner.sync(durable)

    def close(self) -> None:
        self.inner.close()
        if self.close_error is not None:
            raise self.close_error


@attrs.define(eq=False)
class FakeListeningPort:
    """What `FakePortPool.listen` returns: a port that can be closed."""

    number: int
    protocol: DatagramProtocol
    listening: bool = True
    # Datagrams "in the socket buffer": delivered by read_waiting(), not before.
    waiting: list[tuple[bytes, tuple[str, int]]] = attrs.field(factory=list)

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.number)

    clock: IReactorTime | None = None

    def read_waiting(self) -> None:
        """Deliver the waiting datagrams, as the RTP reader reads a socket: none
        once the port is closed, even by the receiver of one of them."""
        while self.listening and self.waiting:
            datagram, source = self.waiting.pop(0)
            self.receive(datagram, source)

    def receive(self, datagram: bytes, source: tuple[str, int]) -> None:
        """As the RTP reader reads: the fast lane first (given a clock for
        its arrival times), else the protocol."""
        lane = getattr(self.protocol, "lane", None)
        if lane is not None and self.clock is not None:
            if lane.offer(datagram, len(datagram), source, self.clock.seconds()):
                return
        self.protocol.datagramReceived(datagram, source)

    def stopListening(self) -> None:
        # As RtpSockets's ports: closing twice is harmless, and the protocol
        # is neither started nor stopped by the pool.
        self.listening = False


@attrs.define
class FakePortPool:
    """Hands out ports from a range in order; `open` maps port -> protocol.
    With a ``clock``, datagrams go through the recordings' fast lanes as the
    RTP reader sends them (arrival times from the clock)."""

    low: int = 41000
    high: int = 41009
    open: dict[int, FakeListeningPort] = attrs.field(factory=dict)
    clock: IReactorTime | None = None

    def listen(
        self, protocol: DatagramProtocol, local_host: str | None = None
    ) -> FakeListeningPort:
        for number in range(self.low, self.high + 1):
            port = self.open.get(number)
            if port is None or not port.listening:
                self.open[number] = FakeListeningPort(number, protocol, clock=self.clock)
                return self.open[number]
        raise NoFreePort(f"all {self.high - self.low + 1} ports of {self.low}-{self.high} are in use")

    def deliver(self, number: int, datagram: bytes, source: tuple[str, int] = ("127.0.0.1", 5004)) -> None:
        """Hand a datagram to whatever listens on ``number``."""
        port = self.open[number]
        if port.listening:
            port.receive(datagram, source)

    def queue(self, number: int, datagram: bytes, source: tuple[str, int] = ("127.0.0.1", 5004)) -> None:
        """Leave a datagram waiting in the port's socket, for `read_waiting`."""
        self.open[number].waiting.append((datagram, source))


@attrs.define
class MemoryWriters:
    """A `Storage.open_writer` that keeps files in memory, by path; with
    ``fail_at`` set, each writer fails that write (see `FailingWriter`)."""

    fail_at: int | None = None
    writers: dict[str, MemoryWavWriter] = attrs.field(factory=dict)

    def __call__(self, path: str, fmt: WavFormat) -> AudioWriter:
        if path in self.writers:
            raise FileExistsError(path)
        writer = self.writers[path] = MemoryWavWriter(path, fmt)
        if self.fail_at is not None:
            return FailingWriter(writer, self.fail_at)
        return writer

    def only(self) -> MemoryWavWriter:
        """The one writer opened (a test that made one recording)."""
        [writer] = self.writers.values()
        return writer


@implementer(IPhoneLink)
@attrs.define(eq=False)
class FakePhoneLink:
    """A control connection that records what the service asked of it."""

    stop_requests: list[tuple[str, str]] = attrs.field(factory=list)
    disconnected: bool = False
    carrying: bool = False

    def send_stop_request(self, recording_id: str, reason: str) -> None:
        self.stop_requests.append((recording_id, reason))

    def disconnect(self) -> None:
        self.disconnected = True

    def now_carrying(self, carrying: bool) -> None:
        self.carrying = carrying


@attrs.frozen
class _FakeRecording:
    """A Start the `FakeRecorder` accepted."""

    request: StartRequest
    link: IPhoneLink
    peer: str
    port: int
    started_at: float


@implementer(IRecorder)
@attrs.define(eq=False)
class FakeRecorder:
    """An `IRecorder` that notes what the control protocol asked of it and
    answers as told, so the protocol can be tested without a service.

    A Start is accepted (the server is the connection's local address, the
    ports 41000 on, in turn) unless ``start_refusal`` gives a reason; its
    link carries it (and is told so) until its Stop is answered. A Stop of
    an id not recording fails with UnknownRecording; else with
    ``stop_failure`` if set; else it fires with the recording's summary, at
    once, or with ``hold_stops`` when `finish` is called."""

    clock: IReactorTime = attrs.field(factory=Clock)
    start_refusal: str | None = None
    stop_failure: Exception | None = None
    hold_stops: bool = False
    links: list[IPhoneLink] = attrs.field(factory=list)  # connected, oldest first
    starts: list[tuple[StartRequest, IPhoneLink, str, str]] = attrs.field(factory=list)
    stops: list[tuple[StopRequest, IPhoneLink | None, str | None]] = attrs.field(factory=list)
    refused: list[str] = attrs.field(factory=list)  # connection_refused's reasons
    closed: list[str] = attrs.field(factory=list)  # connection_closed's reasons
    bad_starts: int = 0
    _recordings: dict[str, _FakeRecording] = attrs.field(factory=dict)
    _held: list[tuple[_FakeRecording, StopRequest, Deferred[RecordingSummary]]] = attrs.field(
        factory=list)
    _stop_waiters: list[Deferred[None]] = attrs.field(factory=list)
    _next_port: int = 41000

    def link_connected(self, link: IPhoneLink) -> None:
        self.links.append(link)

    def link_lost(self, link: IPhoneLink) -> None:
        """The link is forgotten, and so are the recordings it carried."""
        if link in self.links:
            self.links.remove(link)
        carried = self.carries_recordings(link)
        self._recordings = {recording_id: recording
                            for recording_id, recording in self._recordings.items()
                            if recording.link is not link}
        if carried:
            link.now_carrying(False)

    def carries_recordings(self, link: IPhoneLink) -> bool:
        return any(recording.link is link for recording in self._recordings.values())

    def start_recording(self, request: StartRequest, link: IPhoneLink, peer: str,
                        local_host: str) -> Deferred[StartResponse]:
        self.starts.append((request, link, peer, local_host))
        if self.start_refusal is not None:
            return succeed(StartResponse(request.recording_id, FAILED, self.start_refusal))
        recording = self._recordings.get(request.recording_id)
        if recording is None:
            if not self.carries_recordings(link):
                link.now_carrying(True)
            recording = _FakeRecording(request, link, peer, self._next_port,
                                       self.clock.seconds())
            self._recordings[request.recording_id] = recording
            self._next_port += 1
        return succeed(StartResponse(request.recording_id, SUCCESS, server=local_host,
                                     port=recording.port))

    def stop_recording(self, request: StopRequest, link: IPhoneLink | None = None,
                       peer: str | None = None) -> Deferred[RecordingSummary]:
        self.stops.append((request, link, peer))
        recording = self._recordings.get(request.recording_id)
        if recording is None:
            return fail(UnknownRecording(request.recording_id))
        if self.stop_failure is not None:
            return fail(self.stop_failure)
        waiter: Deferred[RecordingSummary] = Deferred()
        self._held.append((recording, request, waiter))
        if not self.hold_stops:
            self.finish(request.recording_id)
        return waiter

    def finish(self, recording_id: str) -> None:
        """Answer the Stops of ``recording_id`` held so far: the recording
        ends, and its link no longer carries it."""
        recording = self._recordings.pop(recording_id, None)
        if recording is not None and not self.carries_recordings(recording.link):
            recording.link.now_carrying(False)
        answering = [held for held in self._held if held[0].request.recording_id == recording_id]
        self._held = [held for held in self._held if held not in answering]
        for stopped, request, waiter in answering:
            waiter.callback(self._summary(stopped, request))

    def _summary(self, recording: _FakeRecording, stop: StopRequest) -> RecordingSummary:
        start = recording.request
        codec = CODECS.get(start.codec, CODECS["PCMA"])
        info = RecordingInfo(recording_id=start.recording_id, device=start.device, codec=codec,
                             direction=start.direction,
                             parties=start.parties.updated(stop.updates), peer=recording.peer)
        return RecordingSummary(
            info=info, audio_format="g711", file=None, started_at=recording.started_at,
            stopped_at=self.clock.seconds(), stop_reason=stop.reason or "stopped by phone",
            stopped_by="phone", data_bytes=0, frames=0, sample_rate=codec.decoded_rate,
            stats=MediaStats(), rtp_port=recording.port,
        )

    def bad_start_request(self) -> None:
        self.bad_starts += 1

    def connection_refused(self, reason: str) -> None:
        self.refused.append(reason)

    def connection_closed(self, reason: str) -> None:
        self.closed.append(reason)

    def when_stopped(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._stop_waiters.append(waiter)
        return waiter

    def stop_finished(self) -> None:
        """As the recorder's stopService finishing: `when_stopped` fires."""
        waiting, self._stop_waiters = self._stop_waiters, []
        for waiter in waiting:
            waiter.callback(None)


@attrs.define(eq=False, kw_only=True)
class FakeIndexer(Indexer):
    """The service's index (recsvc.index.indexer) with its work done at
    once, on the calling thread, in an in-memory SQLite database unless
    given one; `calls` notes what it was asked, in order. As the real one,
    it does nothing until started (each request is logged as failed)."""

    root: str
    database: str = ":memory:"
    reactor: Any = None
    calls: list[tuple[str, Any]] = attrs.field(factory=list)
    _started: bool = False

    def start(self) -> None:
        self._started = True

    def run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if not self._started:
            return fail(RuntimeError("the index is not started"))
        return maybeDeferred(self._call, f, args)

    def file_finished(self, wav_path: str) -> Deferred[None]:
        self.calls.append(("file_finished", wav_path))
        return super().file_finished(wav_path)

    def forget(self, wav_paths: list[str]) -> Deferred[None]:
        self.calls.append(("forget", wav_paths))
        return super().forget(wav_paths)

    def catch_up(self) -> Deferred[CaughtUp | None]:
        self.calls.append(("catch_up", None))
        return super().catch_up()


@attrs.define
class ManualRunner:
    """A `run_blocking` that holds the work until `run_pending` is called, so
    a test can look at a recording while its files are being finished."""

    pending: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = attrs.field(
        factory=list
    )

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        self.pending.append((waiter, f, args))
        return waiter

    def run_pending(self) -> None:
        while self.pending:
            waiter, f, args = self.pending.pop(0)
            maybeDeferred(f, *args).chainDeferred(waiter)


def memory_recorder(
    root: str,
    clock: Any = None,
    writers: MemoryWriters | None = None,
    ports: FakePortPool | None = None,
    run_blocking: Callable[..., Deferred[Any]] = run_now,
    audio_format: str = "g711",
    advertise: str | None = None,
    media_policy: Any = None,
    limits: Any = None,
) -> Any:
    """A RecorderService on fakes: a task.Clock, the fake port pool and
    in-memory WAV writers (sidecars go to ``root``). The reorder window is
    20 ms unless told otherwise, so in-order audio is written as it comes."""
    from twisted.internet.task import Clock

    from recsvc.media.pipeline import MediaPolicy
    from recsvc.service import RecorderService
    from recsvc.session import Limits
    from recsvc.storage.folder import Storage

    clock = Clock() if clock is None else clock
    if ports is None:
        ports = FakePortPool(clock=clock)
    elif isinstance(ports, FakePortPool) and ports.clock is None:
        ports.clock = clock
    return RecorderService(
        clock=clock,
        ports=ports,
        storage=Storage(root, audio_format, MemoryWriters() if writers is None else writers),
        run_blocking=run_blocking,
        advertise=advertise,
        media_policy=MediaPolicy(reorder_window_ms=20) if media_policy is None else media_policy,
        limits=Limits() if limits is None else limits,
    )


@implementer(IObjectStore)
@attrs.define(eq=False)
class MemoryStore:
    """An object store in memory (recsvc.archive.store.IObjectStore), as
    S3 behaves for the archive (tests/test_archive.py holds both to one
    contract). ``objects`` maps keys to bytes; ``puts`` lists the keys
    PUT, in order. A body whose SHA-256 is not the one given with it is
    refused (StoreFailure("BadDigest")), as S3 does. Faults on request: with ``down`` set to a cause, every
    call raises StoreFailure(down); with ``wrong_checksum``, the store
    reports a SHA-256 other than that of what it holds (as a store that
    damaged what it received); with ``keeps_checksums`` False, none (as a
    store that keeps no ChecksumSHA256); with ``conditional_puts`` False,
    a put only_if_absent replaces what is there (as a store that ignores
    If-None-Match). ``heads`` counts the HEADs asked."""

    objects: dict[str, bytes] = attrs.field(factory=dict)
    object_metadata: dict[str, dict[str, str]] = attrs.field(factory=dict)
    content_types: dict[str, str] = attrs.field(factory=dict)
    puts: list[str] = attrs.field(factory=list)
    down: str | None = None
    wrong_checksum: bool = False
    keeps_checksums: bool = True
    conditional_puts: bool = True
    heads: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def _check(self) -> None:
        if self.down is not None:
            raise StoreFailure(self.down, "the memory store was told to fail")

    def put(self, key: str, path: str, content_type: str, metadata: Mapping[str, str],
            sha256: str, only_if_absent: bool = False) -> str | None:
        self._check()
        with open(path, "rb") as handle:
            data = handle.read()
        if sha256_b64(data) != sha256:
            raise StoreFailure("BadDigest", f"{key}: the body's SHA-256 is not {sha256}")
        with self._lock:
            if only_if_absent and self.conditional_puts and key in self.objects:
                raise KeyTaken(key)
            self.objects[key] = data
            self.object_metadata[key] = dict(metadata)
            self.content_types[key] = content_type
            self.puts.append(key)
        return self._checksum(data)

    def honours_only_if_absent(self) -> bool:
        self._check()
        return self.conditional_puts

    def head(self, key: str) -> StoredObject | None:
        self._check()
        with self._lock:
            self.heads += 1
            data = self.objects.get(key)
        if data is None:
            return None
        return StoredObject(len(data), self._checksum(data))

    def _checksum(self, data: bytes) -> str | None:
        """The SHA-256 the store gives for ``data`` (see the class's faults)."""
        if not self.keeps_checksums:
            return None
        return sha256_b64(data + b"!" if self.wrong_checksum else data)

    def metadata(self, key: str) -> dict[str, str]:
        self._check()
        with self._lock:
            if key not in self.objects:
                raise StoreFailure("404", f"no object {key}")
            return dict(self.object_metadata[key])

    def get(self, key: str, first: int = 0, last: int | None = None) -> bytes:
        self._check()
        with self._lock:
            data = self.objects.get(key)
        if data is None:
            raise StoreFailure("NoSuchKey", f"no object {key}")
        if first >= len(data):
            raise StoreFailure("InvalidRange", f"{first} is beyond the object's {len(data)} bytes")
        return data[first:None if last is None else last + 1]

    def delete(self, key: str) -> None:
        self._check()
        with self._lock:
            self.objects.pop(key, None)
            self.object_metadata.pop(key, None)
            self.content_types.pop(key, None)
