"""twistd entry point (Options, makeService) and the wiring of the service tree.

The only module that imports the global reactor, and only when no reactor is
given, so an embedding application may install its own first.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from twisted.application.service import IService, MultiService, Service
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from recsvc.application import descriptors
from recsvc.application.descriptors import descriptor_budget
from recsvc.application.listener import Listener
from recsvc.application.memory import tune_garbage_collector
from recsvc.application.reload import AccessReload, ReloadOnHangup, access_policy
from recsvc.application.startup import (
    advertised_address, check_config, endpoint_for, http_endpoint_for, open_http_warning)
from recsvc.application.tree import AfterRecorder, AtStart, StartedByTwistd
from recsvc.config import Config, ConfigError, as_config, load_config
from recsvc.storage.diskspace import DiskSpace
from recsvc.application.endpoints import only_this_host
from recsvc.logs import Logger
from recsvc.media.pipeline import MediaPolicy
from recsvc.application.batching import BatchedRunner
from recsvc.storage.wav import sync_filesystem
from recsvc.media.sockets import RtpSockets
from recsvc.admission import ConnectionLimits, Connections, StartRate
from recsvc.index.indexer import Indexer
from recsvc.metrics import Metrics, live_figures
from recsvc.observers import IRecordingObserver, RecordingObservers, checked_observers
from recsvc.web.site import make_site
from recsvc.web.connections import WebConnections
from recsvc.webhook import Webhook
from recsvc.control.protocol import ControlFactory
from recsvc.storage.retention import RetentionPolicy
from recsvc.service import RecorderService
from recsvc.session import Limits
from recsvc.storage.folder import Storage
from recsvc.application.threads import background_pool, start_until_shutdown
from recsvc.archive.s3 import S3Store, client_for
from recsvc.archive.uploader import UPLOADS_AT_ONCE, Archive, NoArchive


class StartupRefused(SystemExit):
    """Start-up refused for a reason the user can fix (a bad config file):
    twistd ends with this one line on standard error and exit status 1,
    without its usage block (a UsageError's) or a traceback."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"recsvc: {reason}")
        self.reason = reason


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = ("Record calls from Fanvil phones (server recording) into WAV files. "
                "Relative paths in the config file are taken from its folder.")
    optParameters = [
        ["config", "c", None, "YAML configuration file (default: built-in defaults)"],
    ]

    def postOptions(self) -> None:
        try:
            config = load_config(self["config"]) if self["config"] else Config()
            check_config(config, global_reactor())
        except ConfigError as error:
            raise StartupRefused(error.in_file(self["config"])) from None
        # Kept for SIGHUP, which reads the access lists from it again.
        self["config_path"] = self["config"] and os.path.abspath(self["config"])
        self["config"] = config


_log = Logger()
# Seconds a shutdown waits for the last sidecars to reach hooks.on_finish.
WEBHOOK_GRACE = 5.0
# Threads finishing stopped recordings' files (see _Pools): mostly
# waiting for fsyncs, which the filesystem's journal commits together.
FINISHING_THREADS = 32


def makeService(
    config: Config | Mapping[str, Any] | usage.Options | None = None, reactor: Any = None,
    *, observers: Iterable[IRecordingObserver] = (),
) -> IService:
    """The recorder as a service tree an application can add to its own.

    ``config`` is a Config, a parsed mapping (as from YAML) or twistd's Options.
    ``observers`` (`recsvc.observers.IRecordingObserver`) are told of the
    recordings. Creates storage.root and the folder of index.database.
    The returned MultiService has the recorder (named "recorder"), the
    control listener ("control") and what starts with the reactor: crash
    recovery and the free-space watch ("background").
    Raises ConfigError for a bad config, TypeError for a bad observer.
    """
    root, config, config_path = _root(config)
    told = RecordingObservers(checked_observers(observers))
    if reactor is None:
        reactor = global_reactor()
    # As twistd's Options do: an application's config is checked the same
    # way, and the folders are there before anything needs them.
    check_config(config, reactor)
    budget, limit, wanted = _descriptors(config)
    pools = _thread_pools()
    indexer = Indexer(config.index.database, config.storage.root, reactor, node=config.node)
    metrics = Metrics()
    webhook = None if config.hooks.on_finish is None else Webhook(config.hooks.on_finish, reactor)
    archived_hook = None if config.hooks.on_archived is None or config.archive.url is None \
        else Webhook(config.hooks.on_archived, reactor)
    archive = _archive(config, reactor, metrics, archived_hook)
    recorder = _recorder(config, reactor, pools, indexer, metrics, webhook, told, archive)
    connections = Connections(
        ConnectionLimits(config.control.max_connections, config.control.max_connections_per_ip),
        recorder.access)
    control = _control(config, reactor, recorder, connections)
    http = _http(config, reactor, recorder, indexer, pools, metrics, archive)
    room = descriptors.DescriptorRoom(budget, limit, time.monotonic, functools.partial(
        _in_use, connections, recorder, None if http is None else http[1]))
    # MultiService stops children in reverse: the listener closes first, then
    # the recorder drains its recordings.
    _add(root, "recorder", recorder)
    _add(root, "control", _listener(control, room.for_idle_control))
    if http is not None:
        _add(root, "http", _listener(http, room.for_web, purpose="HTTP", key="http.listen"))
    for hook in (webhook, archived_hook):
        if hook is not None:
            _after_recorder(recorder, hook).setServiceParent(root)
    if config_path is not None:
        _add(root, "reload", _reload(config_path, recorder, connections, reactor))
    _add(root, "background", _background(reactor, pools, indexer, recorder, wanted))
    return root


def _root(
    config: Config | Mapping[str, Any] | usage.Options | None,
) -> tuple[MultiService, Config, str | None]:
    """The tree's root, the Config, and the file it was read from (twistd's
    Options keep it, for SIGHUP; None when built from a mapping or Config)."""
    if isinstance(config, usage.Options):
        return StartedByTwistd(config), as_config(config["config"]), config.get("config_path")
    return MultiService(), as_config(config), None


def _add(root: MultiService, name: str, service: Service) -> None:
    service.setName(name)
    service.setServiceParent(root)


def _descriptors(config: Config) -> tuple[descriptors.Budget, int, int]:
    """Room for a recording on every port, made now (see recsvc.application.descriptors),
    and again once the reactor runs: a daemon's forked child starts with a
    table only as large as its open descriptors need. The limit is raised
    as far as the control port, the recordings and the web port need.
    Returns the budget that fits the limit, the limit, and the size the
    table grows to once the reactor runs."""
    low, high = config.rtp.port_range
    budget = descriptor_budget(config)
    limit, table = descriptors.reserve(high - low + 1, budget.total)
    room = min(descriptors.wanted(high - low + 1), limit)
    _log.info("File descriptors: limit {limit}, room for {table} now", limit=limit, table=table)
    if budget.within(limit) != budget:
        held = budget.within(limit)
        _log.warn("File descriptors: the limit {limit} is below the {needed} that "
                  "control.max_connections, rtp.port_range and http.max_connections need: "
                  "{connections} control connections and {recordings} recordings are held "
                  "room for. Raise the hard limit (LimitNOFILE=) or lower "
                  "control.max_connections (or narrow rtp.port_range).",
                  limit=limit, needed=budget.total, connections=held.control_connections,
                  recordings=held.recordings)
        budget = held
    return budget, limit, room


class _Pools(NamedTuple):
    """Blocking work runs on recsvc's own pools of low-priority threads
    (recsvc.application.threads), not the reactor's (which an embedding
    application may use for its own): the recordings' file work gathered
    into a few jobs per reactor turn (fsyncs side by side, ``disk``); a
    Start's file created on one thread of its own (more starve the reactor
    of the GIL, ``opening``); a stopped recording's files finished on a
    pool of their own, whose threads mostly wait for the disk
    (``finishing``). The measurements behind each size are in
    docs/benchmarks.md ("Thread pools: how many, and why").

    The HTTP side's blocking work (password checks, measuring the free
    space) on a small pool of its own (``web``): however many people guess
    passwords, the recordings' threads are never theirs. Reading and
    decoding audio on another (``playback``): a store that answers slowly
    (the archive's ranges) never holds up a sign-in."""

    disk: ThreadPool
    opening: ThreadPool
    finishing: ThreadPool
    web: ThreadPool
    playback: ThreadPool


# Recordings read (or fetched from the archive) for players at once.
PLAYBACK_THREADS = 4


def _thread_pools() -> _Pools:
    return _Pools(
        disk=background_pool("recsvc-disk", maxthreads=10),
        opening=background_pool("recsvc-open", maxthreads=1, minthreads=1),
        finishing=background_pool("recsvc-finish", maxthreads=FINISHING_THREADS),
        web=background_pool("recsvc-http", maxthreads=2),
        playback=background_pool("recsvc-playback", maxthreads=PLAYBACK_THREADS),
    )


def _archive(config: Config, reactor: Any, metrics: Metrics,
             announce: Webhook | None) -> Archive | NoArchive:
    """The archive of archive.url (boto3 on threads of its own, made when
    the first upload needs it), or none."""
    location = config.archive.location
    if location is None:
        return NoArchive()
    settings = config.archive
    store = S3Store(location, make_client=functools.partial(
        client_for, settings.endpoint_url, settings.region, UPLOADS_AT_ONCE),
        server_side_encryption=settings.server_side_encryption,
        kms_key_id=settings.kms_key_id)
    archive = Archive(reactor, config.storage.root, location, store,
                      keep_local_days=settings.keep_local_days, node=config.node,
                      announce=None if announce is None else announce.deliver,
                      metrics=metrics)
    metrics.watch_archive(archive.status)
    return archive


def _recorder(config: Config, reactor: Any, pools: _Pools, indexer: Indexer, metrics: Metrics,
              webhook: Webhook | None, observers: RecordingObservers,
              archive: Archive | NoArchive) -> RecorderService:
    """The recorder, its RTP ports and its storage, as the config says."""
    low, high = config.rtp.port_range
    run_blocking = functools.partial(deferToThreadPool, reactor, pools.disk)
    recorder = RecorderService(
        clock=reactor,
        ports=RtpSockets(
            reactor, config.rtp.interface, low, high,
            tick=config.rtp.read_interval_ms / 1000,
            receive_buffer=config.rtp.receive_buffer_kb * 1024,
            now=time.monotonic,
        ),
        storage=Storage(
            root=config.storage.root,
            audio_format=config.storage.format,
            file_mode=config.storage.file_mode,
            path_template=config.storage.path_template,
        ),
        run_blocking=run_blocking,
        run_recording=BatchedRunner(reactor, lambda: pools.disk),
        run_opening=functools.partial(deferToThreadPool, reactor, pools.opening),
        run_finishing=functools.partial(deferToThreadPool, reactor, pools.finishing),
        advertise=advertised_address(config),
        node=config.node,
        media_policy=MediaPolicy(
            reorder_window_ms=config.rtp.reorder_window_ms,
            max_gap_fill=config.rtp.max_gap_fill,
            dtmf_payload_type=config.rtp.dtmf_payload_type,
            source=config.rtp.source,
            max_packet_ms=config.rtp.max_packet_ms,
        ),
        limits=Limits(
            first_packet_timeout=config.rtp.first_packet_timeout,
            timeout=config.rtp.timeout,
            max_duration=config.storage.max_duration,
            max_buffer_s=config.storage.max_buffer_s,
        ),
        now=time.monotonic,
        sync_interval=config.storage.sync_interval,
        sync_filesystem=(None if config.storage.sync_each_file
                         else functools.partial(sync_filesystem, config.storage.root)),
        retention=RetentionPolicy(
            max_age_days=config.storage.retention.max_age_days,
            max_total_bytes=int(config.storage.retention.max_total_gb * 1e9),
            min_free_bytes=int(config.storage.retention.min_free_gb * 1e9),
        ),
        retention_interval=config.storage.retention.interval,
        index=indexer,
        archive=archive,
        metrics=metrics,
        webhook=webhook,
        observers=observers,
        access=access_policy(config),
        max_active=config.recordings.max_active,
        max_per_device=config.recordings.max_per_device,
        start_rate=StartRate(config.recordings.max_starts_per_minute),
        max_pending_per_address=config.recordings.max_pending_per_address,
        disk=DiskSpace(
            root=config.storage.root,
            min_free=config.storage.min_free_mb * 1_000_000,
            clock=reactor,
            run_blocking=run_blocking,
        ),
    )
    metrics.watch(functools.partial(live_figures, recorder))
    return recorder


def _control(config: Config, reactor: Any, recorder: RecorderService,
             connections: Connections) -> tuple[IStreamServerEndpoint, ControlFactory]:
    """The phones' control port: its endpoint and factory (and a warning
    when any machine that reaches it may start recordings)."""
    endpoint = endpoint_for(config, reactor)
    if not config.control.allow and not only_this_host(config.control.listen):
        _log.warn("control.allow is empty: any machine that reaches {listen} may start "
                  "recordings. List the phones' networks there.", listen=config.control.listen)
    return endpoint, ControlFactory(recorder, config.control.max_message_bytes, connections,
                                    config.control.idle_timeout, reactor)


def _http(config: Config, reactor: Any, recorder: RecorderService, indexer: Indexer,
          pools: _Pools, metrics: Metrics,
          archive: Archive | NoArchive) -> tuple[IStreamServerEndpoint, WebConnections] | None:
    """The HTTP side's endpoint and connections (None when http.listen is
    "off"), with the loud warning owed when it is open to the network; the
    recordings not on this node's disk play from the archive."""
    endpoint = http_endpoint_for(config, reactor)
    if endpoint is None:
        return None
    warning = open_http_warning(config, endpoint)
    if warning is not None:
        # (Not a "warning" key: the legacy log takes that for a Python warning.)
        _log.critical("WARNING: {reason}", reason=warning)
    return endpoint, WebConnections(make_site(
        recorder, indexer.run_search, config.storage.root,
        functools.partial(deferToThreadPool, reactor, pools.web), metrics,
        config.http.auth, now=reactor.seconds, allowed_hosts=config.http.allowed_hosts,
        numbers=config.numbers.plan, node=recorder.node,
        archive=archive if isinstance(archive, Archive) else None,
        run_playback=functools.partial(deferToThreadPool, reactor, pools.playback),
        index_database=config.index.database, groups=config.group_map,
        call_later=reactor.callLater),
        ConnectionLimits(config.http.max_connections, config.http.max_connections_per_ip),
        config.http.request_timeout, reactor, metrics=metrics)  # (its room: see _listener)


def _in_use(connections: Connections, recorder: RecorderService,
            web: WebConnections | None) -> descriptors.InUse:
    """What holds descriptors now, as `descriptors.DescriptorRoom` counts them."""
    return descriptors.InUse(connections.total,
                             len(recorder.registry) + recorder.starting_count,
                             0 if web is None else web.connections.total)


def _listener(side: tuple[IStreamServerEndpoint, ControlFactory | WebConnections],
              room: Callable[[], bool], **how: str) -> Listener:
    """A side's listener, its new connections screened and given descriptors
    only while ``room`` says the recordings keep theirs."""
    endpoint, factory = side
    factory.room = room
    return Listener(endpoint, factory, screen=factory.admit, **how)


def _after_recorder(recorder: RecorderService, webhook: Webhook) -> Service:
    """The last recordings' sidecars go out as the recorder finishes them.
    They are given WEBHOOK_GRACE seconds; what is left is logged."""
    return AfterRecorder(recorder, lambda: webhook.settled(WEBHOOK_GRACE).addBoth(
        lambda _: webhook.stop()))


def _reload(config_path: str, recorder: RecorderService, connections: Connections,
            reactor: Any) -> Service:
    """SIGHUP: control.allow and devices.allow read again; recordings in
    progress go on. From the tree's start (before the reactor runs), so
    that a reload never finds SIGHUP's default, which ends the process."""
    return ReloadOnHangup(AccessReload(config_path, recorder, connections), reactor)


def _background(reactor: Any, pools: _Pools, indexer: Indexer, recorder: RecorderService,
                wanted: int) -> Service:
    """Once the reactor runs (and only if the listener could start): the
    threads, the index and the descriptor table; finish the recordings a
    crash left behind, and watch the free space."""

    def reactor_running() -> None:
        if not background.running:
            return  # the tree was stopped before the reactor ran (embedded)
        tune_garbage_collector()
        descriptors.grow_table(wanted)
        for pool in pools:
            start_until_shutdown(reactor, pool)
        # The index's thread (and its connection) lasts until the reactor has
        # stopped, after the recordings have finished; a problem with the
        # index is logged and never stops the recorder.
        indexer.start()
        recorder.reactor_running()

    background = AtStart(lambda: reactor.callWhenRunning(reactor_running))
    return background


def global_reactor() -> Any:
    """The global reactor, imported only when asked for (this module is its
    one importer; `recsvc check-config` checks endpoints against it too)."""
    from twisted.internet import reactor

    return reactor
