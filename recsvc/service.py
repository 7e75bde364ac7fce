"""RecorderService: starts and stops recordings, keeps them by id (Registry); shutdown drains them."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Callable, Iterator

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from recsvc.admission import (OTHERS, AccessPolicy, RefusalLog, StartRate, shown_peer,
                              source_of)
from recsvc.upkeep import StorageUpkeep
from recsvc.archive.uploader import Archive, NoArchive
from recsvc.devices import device_key
from recsvc.media.codec import CODECS, Codec
from recsvc.storage.diskspace import DiskSpace
from recsvc.index.indexer import Indexer, NoIndex
from recsvc.logs import Logger
from recsvc.metrics import Metrics, NoMetrics
from recsvc.observers import RecordingObservers
from recsvc.media.pipeline import MediaPipeline, MediaPolicy
from recsvc.media.ports import NoFreePort, RtpPort, RtpPortPool
from recsvc.control.commands import (
    FAILED,
    SUCCESS,
    StartRequest,
    StartResponse,
    StopRequest,
)
from recsvc.control.interfaces import IPhoneLink, IRecorder, StopRefused, UnknownRecording
from recsvc.media.receiver import RtpReceiver
from recsvc.refusals import RefusalLines
from recsvc.storage.retention import RetentionPolicy
from recsvc.storage.syncing import SyncTurns
from recsvc.session import (
    BY_CONNECTION,
    BY_PHONE,
    BY_SERVER,
    RECORDING,
    IRecordingEvents,
    Limits,
    Recording,
    RecordingContext,
    RunBlocking,
)
from recsvc.media.source import normalize_ip
from recsvc.storage.folder import Storage
from recsvc.summary import RecordingInfo, RecordingSummary
from recsvc.storage.wav import AudioWriter

if TYPE_CHECKING:
    from recsvc.webhook import Webhook

# Devices (or addresses) named in refusal lines a minute at most; the rest
# are summed up in one line a reason ("many devices"): a flood of Starts
# with made-up MACs must not write a line for each.
REFUSALS_NAMED = 100

# Why a Stop, or a Start of a running id, from another phone is refused.
NOT_ITS_PHONE = "not this phone's recording"
# Why a Start is refused by recordings.max_pending_per_address.
TOO_MANY_PENDING = "too many recordings without RTP from this address"


@attrs.define(eq=False)
class Registry:
    """The recordings that are running or stopping, by recording id."""

    _recordings: dict[str, Recording] = attrs.field(factory=dict)
    # How many each device has (by recsvc.admission.device_key).
    _by_device: dict[str, int] = attrs.field(factory=dict)

    def add(self, recording: Recording) -> None:
        if recording.info.recording_id in self._recordings:
            raise KeyError(f"recording {recording.info.recording_id} exists")
        self._recordings[recording.info.recording_id] = recording
        key = device_key(recording.info.device)
        self._by_device[key] = self._by_device.get(key, 0) + 1

    def count_of(self, device: str) -> int:
        """The recordings of ``device`` (running or stopping)."""
        return self._by_device.get(device_key(device), 0)

    def get(self, recording_id: str) -> Recording | None:
        return self._recordings.get(recording_id)

    def remove(self, recording: Recording) -> None:
        if self._recordings.get(recording.info.recording_id) is recording:
            del self._recordings[recording.info.recording_id]
            key = device_key(recording.info.device)
            count = self._by_device.pop(key, 0)
            if count > 1:
                self._by_device[key] = count - 1

    def __iter__(self) -> Iterator[Recording]:
        return iter(list(self._recordings.values()))

    def __len__(self) -> int:
        return len(self._recordings)


@implementer(IRecorder)
@attrs.define(eq=False)
class RecorderService(Service):
    """Starts and stops recordings for the control connections.

    ``advertise`` is the address put in Start responses; None means the local
    address of the phone's own control connection (an IPv4 phone reaching an
    IPv6 listener is given its IPv4 address back).
    """

    log = Logger()

    clock: IReactorTime
    ports: RtpPortPool
    storage: Storage
    run_blocking: RunBlocking
    # The recordings' own file work (hand-overs, sidecars, finishing), which
    # comes in bursts: may gather calls (recsvc.application.batching); None: run_blocking.
    run_recording: RunBlocking | None = None
    # Creating a Start's file, which the phone waits for: kept apart from
    # the writing (None: run_blocking too).
    run_opening: RunBlocking | None = None
    # Finishing a stopped recording's files, which its phone waits for:
    # kept apart from the hand-overs (None: as the recordings' file work).
    run_finishing: RunBlocking | None = None
    advertise: str | None = None
    # The recorder node's name, in every sidecar (the config's node).
    node: str = ""
    media_policy: MediaPolicy = MediaPolicy()
    limits: Limits = Limits()
    # The clock RTP arrival times are read from (monotonic in production);
    # None: the reactor's clock, as tests with task.Clock want.
    now: Callable[[], float] | None = None
    # What `syncing` starts with: see recsvc.storage.syncing.SyncTurns
    # (storage.sync_interval; storage.sync_each_file off: the blocking sync
    # of the recordings' whole filesystem, None: each file fdatasync'd).
    _sync_interval: float = attrs.field(default=1.0, alias="sync_interval")
    _sync_filesystem: Callable[[], None] | None = attrs.field(
        default=None, alias="sync_filesystem")
    # Handed to the upkeep, which holds them (the disk and the index are
    # reached through the properties below): the free space watch
    # (storage.min_free_mb; None: not watched), the retention sweeps, and the
    # index of finished recordings (index.database; NoIndex: none).
    _disk: DiskSpace | None = attrs.field(default=None, alias="disk")
    _retention: RetentionPolicy = attrs.field(default=RetentionPolicy(), alias="retention")
    _retention_interval: float = attrs.field(default=600.0, alias="retention_interval")
    _index: Indexer | NoIndex = attrs.field(factory=NoIndex, alias="index")
    # Uploads the finished recordings to archive.url; NoArchive: none.
    _archive: Archive | NoArchive = attrs.field(factory=NoArchive, alias="archive")
    # Told of Starts, recordings and files (recsvc.metrics); NoMetrics: nobody.
    metrics: Metrics | NoMetrics = attrs.field(factory=NoMetrics)
    # Each finished file's sidecar goes to it (hooks.on_finish); None: none.
    webhook: Webhook | None = None
    # The embedding application's IRecordingObservers (makeService's observers).
    observers: RecordingObservers = RecordingObservers()
    # Who may record (devices.allow; replaced on a reload) and how much.
    access: AccessPolicy = AccessPolicy()
    # Recordings at once (recordings.max_active); 0: as many as the ports.
    max_active: int = 0
    max_per_device: int = 1_000_000
    # Starts a device may make a minute (recordings.max_starts_per_minute).
    start_rate: StartRate | None = None
    # Recordings (and Starts being created) that have had no RTP yet, from
    # one address or IPv6 /64 (recordings.max_pending_per_address).
    max_pending_per_address: int = 500
    registry: Registry = attrs.field(factory=Registry)
    # Refused Starts, logged once a minute per device (the rest summed up).
    _refusals: RefusalLines = attrs.field(init=False)
    # Refused Stops, logged once a minute per address.
    _stop_refusals: RefusalLines = attrs.field(init=False)
    # How many recordings each address (see admission.source_of) has
    # waiting for their first RTP packet.
    _awaiting_rtp: dict[str, int] = attrs.field(factory=dict)
    _links: set[IPhoneLink] = attrs.field(factory=set)
    # The links that carry recordings or Starts being created, with how many.
    _carried: dict[IPhoneLink, int] = attrs.field(factory=dict)
    _accepting: bool = True
    # The WAV paths of this run's recordings, which recovery must not touch
    # (read from its thread: set membership is atomic).
    _active_paths: set[str] = attrs.field(factory=set)
    _starting: dict[str, _PendingStart] = attrs.field(factory=dict)
    _creating_fails: bool = False  # the last Start's file could not be created
    _stop_waiters: list[Deferred[None]] = attrs.field(factory=list)
    # The recordings' sync turns.
    syncing: SyncTurns = attrs.field(init=False)
    # Start-up recovery, retention, the index catching up, the disk watch.
    upkeep: StorageUpkeep = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        Service.__init__(self)
        self._refusals = RefusalLines(self.clock, self._summarise_refusals,
                                      RefusalLog(max_peers=REFUSALS_NAMED))
        self._stop_refusals = RefusalLines(self.clock, self._summarise_stop_refusals,
                                           RefusalLog(max_peers=REFUSALS_NAMED))
        self.syncing = SyncTurns(self.clock, self.run_blocking, self.registry,
                                 self._sync_interval, self._sync_filesystem)
        self.upkeep = StorageUpkeep(
            self.clock, self.storage, self.run_blocking,
            in_use=self._active_paths.__contains__, running=lambda: bool(self.running),
            disk_critical=self._disk_critical, disk=self._disk, retention=self._retention,
            retention_interval=self._retention_interval, index=self._index,
            archive=self._archive,
        )

    @property
    def disk(self) -> DiskSpace | None:
        """The free space watch (the upkeep's); Starts are refused when low."""
        return self.upkeep.disk

    @disk.setter
    def disk(self, disk: DiskSpace | None) -> None:
        self.upkeep.disk = disk

    @property
    def index(self) -> Indexer | NoIndex:
        """The index of finished recordings (the upkeep's)."""
        return self.upkeep.index

    @index.setter
    def index(self, index: Indexer | NoIndex) -> None:
        self.upkeep.index = index

    @property
    def archive(self) -> Archive | NoArchive:
        """The archive of finished recordings (the upkeep's)."""
        return self.upkeep.archive

    def link_connected(self, link: IPhoneLink) -> None:
        self._links.add(link)

    def link_lost(self, link: IPhoneLink) -> None:
        """A control connection is gone: its recordings end, keeping what arrived."""
        self._links.discard(link)
        if link not in self._carried:
            return  # (most connections: no need to look through them all)
        for pending in self._starting.values():
            if pending.link is link:
                pending.link_lost = True
        for recording in self.registry:
            if recording.link is link:
                self._carry(link, -1)
                recording.link = None
                recording.stop("connection lost", BY_CONNECTION).addErrback(lambda f: None)

    def _carry(self, link: IPhoneLink | None, change: int) -> None:
        """Count a recording (or a Start being created) onto ``link``, or
        off it; the link is told when it begins or ends carrying any."""
        if link is None:
            return
        before = self._carried.get(link, 0)
        after = before + change
        if after > 0:
            self._carried[link] = after
        else:
            self._carried.pop(link, None)
        if (before > 0) != (after > 0):
            link.now_carrying(after > 0)

    def _relink(self, holder: Recording | _PendingStart, link: IPhoneLink) -> None:
        """The connection that now answers for a recording or a pending Start."""
        self._carry(link, 1)
        self._carry(holder.link, -1)
        holder.link = link

    def start_recording(
        self, request: StartRequest, link: IPhoneLink, peer: str, local_host: str
    ) -> Deferred[StartResponse]:
        """Answer a RecordStartRequest: open a port and a file, or say why not.
        The answer comes once the port is open; the file is created behind it,
        off the reactor thread (its failure stops the recording, and the
        Starts after it wait for their files, to be refused if they fail
        too). During start-up recovery the answer waits for it."""
        recording_id = request.recording_id
        existing = self.registry.get(recording_id)
        if existing is not None:
            if device_key(existing.info.device) != device_key(request.device):
                return succeed(self._refused(request, "id already recording"))
            if not _its_phone(existing.link, existing.info.peer, link, peer):
                return succeed(self._refused(request, NOT_ITS_PHONE))
            if existing.state != RECORDING:
                return succeed(self._refused(request, "id still stopping"))
            # The phone retried: same answer, and its newest connection is
            # the one to tell when the server stops.
            self._relink(existing, link)
            return succeed(self._accepted(existing, local_host))
        pending = self._starting.get(recording_id)
        if pending is not None:
            if device_key(pending.device) != device_key(request.device):
                return succeed(self._refused(request, "id already recording"))
            if not _its_phone(pending.link, pending.peer, link, peer):
                return succeed(self._refused(request, NOT_ITS_PHONE))
            self._relink(pending, link)  # retried while its file is being created
            pending.link_lost = False  # (the connection that broke is no longer its)
            return pending.when_done()
        if not self._accepting:
            return succeed(self._refused(request, "server shutting down"))
        source = source_of(peer)
        refusal = self._over_limit(request.device, source)
        if refusal is not None:
            return succeed(self._refused(request, refusal))
        if self.disk is not None and self.disk.low:
            return succeed(self._refused(request, "disk full"))
        codec = CODECS.get(request.codec)
        if codec is None:
            supported = ", ".join(CODECS)
            return succeed(self._refused(
                request, f"unsupported codec {request.codec[:20]} (use {supported})"
            ))
        # Counted only for a Start that passed every other check.
        if self.start_rate is not None and not self.start_rate.allow(
                device_key(request.device), self.clock.seconds()):
            return succeed(self._refused(request, "too many starts from this device"))
        receiver = RtpReceiver()
        try:
            # Where the phone is told to send its RTP (see _accepted).
            port = self.ports.listen(receiver, self.advertise or normalize_ip(local_host))
        except NoFreePort:
            if self.start_rate is not None:
                self.start_rate.refund(device_key(request.device))
            return succeed(self._refused(request, "no free port"))
        awaiting = _AwaitingRtp(self._awaiting_rtp, source)
        pending = self._starting[recording_id] = _PendingStart(request.device, peer, link)
        self._carry(link, 1)
        Deferred.fromCoroutine(
            self._open(request, pending, peer, local_host, codec, receiver, port, awaiting)
        )
        return pending.when_done()

    async def _open(
        self, request: StartRequest, pending: _PendingStart, peer: str, local_host: str,
        codec: Codec, receiver: RtpReceiver, port: RtpPort, awaiting: _AwaitingRtp,
    ) -> None:
        recording_id = request.recording_id
        started_at = self.clock.seconds()
        events = _RecordingEvents(self, self._active_paths, request, codec, started_at, awaiting)
        response: StartResponse | None = None  # None: a bug (refused, logged)
        writer: AudioWriter | None = None
        opening: Deferred[AudioWriter] | None = None
        try:
            # New files are made only once start-up recovery is done: it
            # must never see (and finish) a file that is being created.
            await self.upkeep.recovery_done()
            opening = (self.run_opening or self.run_blocking)(events.open_part, 1)
            opening.addBoth(self._file_created)
            if self._creating_fails:
                # The last file could not be created: wait for this one, so
                # that the phone is refused rather than stopped at once.
                writer, opening = await opening, None
        except OSError as error:
            port.stopListening()
            self.log.error(
                "Recording {recordingId} refused: cannot create its file: {reason}",
                recordingId=recording_id, device=request.device, peer=peer,
                reason=error.strerror or str(error),
            )
            response = self._refused(request, "storage not writable")
        except Exception:
            port.stopListening()
            self.log.failure("Recording {recordingId}: creating its file failed",
                             recordingId=recording_id)
        else:
            try:
                if self._accepting:
                    first_file = writer if writer is not None else opening
                    assert first_file is not None
                    response = self._begin(request, pending.link, peer, local_host, codec,
                                           receiver, port, first_file, started_at, events)
                    if pending.link_lost:
                        # The phone's connection broke while the file was made.
                        self.registry.get(recording_id).stop(  # type: ignore[union-attr]
                            "connection lost", BY_CONNECTION
                        ).addErrback(lambda failure: None)
                else:
                    # Shut down while the file was being created: no recording.
                    port.stopListening()
                    response = self._refused(request, "server shutting down")
                    try:
                        if writer is None and opening is not None:
                            writer = await opening
                        await self.run_blocking(_abandon, writer)
                    except Exception as error:
                        self.log.warn("Recording {recordingId}: removing its unused file failed: {reason}",
                                      recordingId=recording_id, reason=str(error))
                    events.forget_paths()
            except Exception:
                self.log.failure("Recording {recordingId} could not begin",
                                 recordingId=recording_id)
                self._undo_begin(recording_id, port, writer, opening, events)
        finally:
            if self.registry.get(recording_id) is None:
                awaiting.release()  # (no recording began)
            del self._starting[recording_id]
            self._carry(pending.link, -1)
            pending.done(response or self._refused(request, "internal error"))

    def _undo_begin(
        self, recording_id: str, port: RtpPort, writer: AudioWriter | None,
        opening: Deferred[AudioWriter] | None, events: _RecordingEvents,
    ) -> None:
        """A Start that failed to begin (a bug): its recording stopped if it
        exists, else its port closed and its file, once made, removed (and
        left to recovery and retention again)."""
        recording = self.registry.get(recording_id)
        if recording is not None:
            recording.stop("internal error", BY_SERVER).addErrback(lambda failure: None)
            return
        port.stopListening()
        made = opening if writer is None else succeed(writer)
        if made is not None:
            made.addCallback(lambda writer: self.run_blocking(_abandon, writer)).addErrback(
                lambda failure: self.log.failure(
                    "Recording {recordingId}: removing its unused file failed", failure,
                    recordingId=recording_id)
            ).addBoth(lambda _: events.forget_paths())

    def _file_created(self, result: Any) -> Any:
        """Note whether creating a Start's file failed (see start_recording)."""
        self._creating_fails = isinstance(result, Failure) and result.check(OSError) is not None
        return result

    def _over_limit(self, device: str, source: str) -> str | None:
        """Why a new Start of ``device`` from ``source`` (an address, see
        admission.source_of) is refused by devices.allow or the recording
        limits, if it is."""
        if not self.access.allows_device(device):
            return "device not allowed"
        if self.max_active and len(self.registry) + len(self._starting) >= self.max_active:
            return "server busy"
        starting = sum(1 for pending in self._starting.values()
                       if device_key(pending.device) == device_key(device))
        if self.registry.count_of(device) + starting >= self.max_per_device:
            return "too many recordings for this device"
        # Not per device, which a client can make up for each Start: per
        # address, and only those without RTP yet (a NAT address in front
        # of a whole site records all its calls).
        if self._awaiting_rtp.get(source, 0) >= self.max_pending_per_address:
            return TOO_MANY_PENDING
        return None

    def _begin(
        self, request: StartRequest, link: IPhoneLink, peer: str, local_host: str, codec: Codec,
        receiver: RtpReceiver, port: RtpPort, first_file: AudioWriter | Deferred[AudioWriter],
        started_at: float, events: _RecordingEvents,
    ) -> StartResponse:
        recording = Recording(
            info=RecordingInfo(
                recording_id=request.recording_id,
                device=request.device,
                codec=codec,
                direction=request.direction,
                parties=request.parties,
                peer=peer,
                node=self.node,
            ),
            started_at=started_at,
            first_file=first_file,
            media=MediaPipeline(codec, self.storage.encoder(codec), peer, self.media_policy),
            context=RecordingContext(
                storage=self.storage, clock=self.clock,
                run_blocking=self.run_recording or self.run_blocking,
                run_finishing=self.run_finishing, limits=self.limits, now=self.now,
            ),
            events=events,
            link=link,
            port=port,
            lane=receiver.lane,
        )
        self.syncing.enrol(recording)
        # Its first packet ends its wait (and later ones go to it directly).
        receiver.sink = _FirstPacket(receiver, recording, events.rtp_arrived)
        self.registry.add(recording)
        self._carry(link, 1)
        self.metrics.recording_started()
        recording.begin()
        self.log.info(
            "Recording {recordingId} started from {device} ({codec}) on port {port}"
            " in {startMs} ms",
            recordingId=request.recording_id, device=request.device, codec=codec.name,
            peer=peer, port=recording.rtp_port,
            # From the Start's arrival to its answer.
            startMs=round(1000 * (self.clock.seconds() - started_at), 1),
        )
        return self._accepted(recording, local_host)

    def _accepted(self, recording: Recording, local_host: str) -> StartResponse:
        return StartResponse(
            recording_id=recording.recording_id,
            result=SUCCESS,
            server=self.advertise or normalize_ip(local_host),
            port=recording.rtp_port,
        )

    def _refused(self, request: StartRequest, reason: str) -> StartResponse:
        self.metrics.start_refused(reason)
        # A phone retrying against a limit is named once a minute, not each time.
        logged = self._refusals.note(device_key(request.device), reason)
        if logged is not None:
            self.log.warn(
                "Recording {recordingId} refused: {reason} ({count} from {device} since "
                "the last line)", recordingId=request.recording_id, device=request.device,
                reason=reason, count=logged[1])
        return StartResponse(recording_id=request.recording_id, result=FAILED, reason=reason)

    def _summarise_refusals(self, device: str, reason: str, count: int) -> None:
        self.log.warn("Starts refused: {reason} ({count} more from {device} since the last line)",
                      device="many devices" if device == OTHERS else device, reason=reason,
                      count=count)

    def stop_recording(
        self, request: StopRequest, link: IPhoneLink | None = None, peer: str | None = None,
    ) -> Deferred[RecordingSummary]:
        """Answer a RecordStopRequest; fails with UnknownRecording, or with
        StopRefused if it came on ``link`` from ``peer`` and the recording
        is another phone's: neither that connection's nor its address's.
        (No link: the server's own Stop, an embedding application's.)"""
        pending = self._starting.get(request.recording_id)
        if pending is not None:
            if link is not None and not _its_phone(pending.link, pending.peer, link, peer):
                return fail(self._stop_refused(request, peer))
            # A Stop right behind its Start: once the file exists, stop it.
            return pending.when_done().addCallback(
                lambda _: self.stop_recording(request, link, peer))
        recording = self.registry.get(request.recording_id)
        if recording is None:
            return fail(UnknownRecording(request.recording_id))
        if link is not None and not _its_phone(recording.link, recording.info.peer, link, peer):
            return fail(self._stop_refused(request, peer))
        return recording.stop(request.reason or "stopped by phone", BY_PHONE, request.updates)

    def _stop_refused(self, request: StopRequest, peer: str | None) -> StopRefused:
        """Count and (once a minute per address) log a Stop for another
        phone's recording; it changes nothing."""
        self.metrics.stop_refused(NOT_ITS_PHONE)
        address = peer or "?"
        logged = self._stop_refusals.note(address, NOT_ITS_PHONE)
        if logged is not None:
            self.log.warn(
                "Stop of {recordingId} refused: {reason} ({count} from {peer} since the "
                "last line)", recordingId=request.recording_id, reason=NOT_ITS_PHONE,
                peer=address, count=logged[1])
        return StopRefused(NOT_ITS_PHONE)

    def _summarise_stop_refusals(self, peer: str, reason: str, count: int) -> None:
        self.log.warn("Stops refused: {reason} ({count} more from {peer} since the last line)",
                      peer=shown_peer(peer), reason=reason,
                      count=count)

    def startService(self) -> None:
        self._accepting = True
        Service.startService(self)

    def reactor_running(self) -> None:
        """What needs threads and timers once the reactor runs (makeService
        arranges the call): the upkeep's recovery, sweeps and disk watch."""
        self.upkeep.reactor_running()

    def _recording_started(self, recording: Recording) -> None:
        """A recording's first file exists."""
        self.observers.started(recording.info)

    def _file_finished(self, path: str, summary: RecordingSummary) -> None:
        self.index.file_finished(path)
        self.archive.file_finished(path, summary)
        self.metrics.file_finished(summary)
        if self.webhook is not None:
            self.webhook.deliver(summary.to_json())
        self.observers.finished(summary, path)

    def _file_kept(self, path: str, summary: RecordingSummary) -> None:
        """A file that could not be finished cleanly is on disk with its
        sidecar (which names the error): the index, the archive and the
        webhook take it now, not at the next start; its recording fails
        (the observers hear that, not of the file)."""
        self.index.file_finished(path)
        self.archive.file_finished(path, summary)
        if self.webhook is not None:
            self.webhook.deliver(summary.to_json())

    def _recording_stopped(self, recording: Recording) -> None:
        """A recording has stopped: it leaves the registry and its link."""
        self.registry.remove(recording)
        self._carry(recording.link, -1)
        self._recording_finished(recording)

    def _recording_finished(self, recording: Recording) -> None:
        outcome = recording.outcome
        if isinstance(outcome, Failure):
            self.observers.failed(recording.info, outcome.getErrorMessage())
        cause = recording.stop_cause
        assert cause is not None
        if isinstance(outcome, Failure):
            self.metrics.file_unfinished()
        self.metrics.recording_finished(cause.reason, cause.stopped_by,
                                        cause.at - recording.started_at, recording.progress())

    def carries_recordings(self, link: IPhoneLink) -> bool:
        """Whether a control connection has a recording running or starting."""
        return link in self._carried

    def connection_refused(self, reason: str) -> None:
        self.metrics.connection_refused(reason)

    def connection_closed(self, reason: str) -> None:
        """The server closed a control connection (``idle``)."""
        self.metrics.connection_closed(reason)

    def bad_start_request(self) -> None:
        """A RecordStartRequest that could not be read was refused."""
        self.metrics.start_refused("bad request")

    @property
    def accepting(self) -> bool:
        """Whether new recordings are taken (False once shutting down)."""
        return self._accepting

    @property
    def connection_count(self) -> int:
        return len(self._links)

    @property
    def starting_count(self) -> int:
        return len(self._starting)

    def _disk_critical(self) -> None:
        for recording in self.registry:
            if recording.state == RECORDING:
                recording.stop("disk full", BY_SERVER).addErrback(lambda failure: None)

    async def _drain(self) -> None:
        self._accepting = False
        # Starts whose files are being created finish first (refused now).
        await DeferredList([pending.when_done() for pending in self._starting.values()])
        self.upkeep.stop()
        self.syncing.stop()
        stops = [
            recording.stop("shutdown", BY_SERVER) for recording in self.registry
        ]
        if stops:
            self.log.info("Shutting down: finishing {count} recordings", count=len(stops))
        await DeferredList(stops, consumeErrors=True)
        for link in list(self._links):
            link.disconnect()

    def stopService(self) -> Deferred[None]:
        """Stop every recording (the phones are told), finish the files, then
        close the control connections."""
        Service.stopService(self)
        return Deferred.fromCoroutine(self._drain()).addBoth(self._drained)

    def _drained(self, result: Any) -> Any:
        self._refusals.flush()
        self._stop_refusals.flush()
        waiting, self._stop_waiters = self._stop_waiters, []
        for waiter in waiting:
            waiter.callback(None)
        return result

    def when_stopped(self) -> Deferred[None]:
        """Fires once a stopService has finished the recordings (the next
        one, if none is under way)."""
        waiter: Deferred[None] = Deferred()
        self._stop_waiters.append(waiter)
        return waiter


def _its_phone(own_link: IPhoneLink | None, own_peer: str, link: IPhoneLink,
               peer: str | None) -> bool:
    """Whether a command on ``link`` from ``peer`` comes from the phone of a
    recording (or pending Start) carried by ``own_link`` for ``own_peer``:
    on its connection, or on another from its address (it reconnected)."""
    if link is own_link:
        return True
    return peer is not None and normalize_ip(peer) == normalize_ip(own_peer)


@attrs.define(eq=False)
class _AwaitingRtp:
    """A Start's place among its address's recordings that have had no RTP
    yet (recordings.max_pending_per_address): taken when the Start is
    accepted, given back once, at its first packet or when it ends."""

    _counts: dict[str, int]
    _source: str
    _held: bool = True

    def __attrs_post_init__(self) -> None:
        self._counts[self._source] = self._counts.get(self._source, 0) + 1

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        count = self._counts.pop(self._source) - 1
        if count > 0:
            self._counts[self._source] = count


@implementer(IRecordingEvents)
@attrs.define(eq=False)
class _RecordingEvents:
    """The recorder's side of one recording: it creates the recording's
    files (and keeps their paths from recovery), holds its place among its
    address's recordings without RTP, and tells the recorder what becomes
    of it (through the recorder's own, module-internal, methods)."""

    _recorder: RecorderService
    # The recorder's paths in use, which recovery and retention leave alone:
    # added to from open_part's thread (set.add is atomic).
    _active_paths: set[str]
    _request: StartRequest
    _codec: Codec
    _started_at: float
    _awaiting: _AwaitingRtp
    _paths: list[str] = attrs.field(factory=list)

    def open_part(self, number: int) -> AudioWriter:
        request, parties = self._request, self._request.parties
        writer = self._recorder.storage.create(
            self._codec, self._started_at, request.device, request.direction,
            parties.remote_number, request.recording_id, number,
            remote_name=parties.remote_name, local_number=parties.local_number,
            local_name=parties.local_name,
        )
        self._paths.append(writer.path)
        self._active_paths.add(writer.path)
        return writer

    def rtp_arrived(self) -> None:
        """Its call's first packet is admitted: it no longer waits for RTP."""
        self._awaiting.release()

    def forget_paths(self) -> None:
        """Its files are done with: recovery and retention may have them."""
        self._active_paths.difference_update(self._paths)

    def started(self, recording: Recording) -> None:
        self._recorder._recording_started(recording)

    def file_finished(self, recording: Recording, path: str, summary: RecordingSummary) -> None:
        self._recorder._file_finished(path, summary)

    def file_kept(self, recording: Recording, path: str, summary: RecordingSummary) -> None:
        self._recorder._file_kept(path, summary)

    def stopped(self, recording: Recording) -> None:
        self._awaiting.release()
        self._recorder._recording_stopped(recording)
        self.forget_paths()


@attrs.define(eq=False)
class _FirstPacket:
    """A recording's packet sink until its call's first packet is admitted
    (from its source, of its payload types and size: a stray or foreign
    datagram does not count): that packet ends its wait for RTP, and the
    receiver hands the rest straight to the recording."""

    _receiver: RtpReceiver
    _recording: Recording
    _arrived: Callable[[], None]

    def packet_received(self, packet: Any, source: tuple[str, int]) -> None:
        recording = self._recording
        recording.packet_received(packet, source)
        if recording.media_arrived:
            self._receiver.sink = recording
            self._arrived()

    def datagram_invalid(self) -> None:
        self._recording.datagram_invalid()


@attrs.define(eq=False)
class _PendingStart:
    """A Start whose file is being created: retries and Stops wait for it."""

    device: str
    peer: str
    link: IPhoneLink
    link_lost: bool = False
    _waiting: list[Deferred[StartResponse]] = attrs.field(factory=list)
    _response: StartResponse | None = None

    def when_done(self) -> Deferred[StartResponse]:
        if self._response is not None:
            return succeed(self._response)
        waiter: Deferred[StartResponse] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def done(self, response: StartResponse) -> None:
        self._response = response
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(response)


def _abandon(writer: AudioWriter) -> None:
    """Close and remove the file of a recording that never began. Blocking."""
    writer.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(writer.path)
