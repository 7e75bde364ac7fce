"""twistd entry point (Options, makeService) and the wiring of the service tree.

The only module that imports the global reactor, and only when no reactor is
given, so an embedding application may install its own first.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import socket
import time
from typing import Any, Callable, Iterable, Mapping

from twisted.application.service import IService, MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThreadPool
from twisted.python import usage
from twisted.python.failure import Failure

from recsvc.application import descriptors
from recsvc.config import (
    Config, ConfigError, as_config, config_of_file, gives_key, load_config, read_config_file)
from recsvc.storage.diskspace import DiskSpace
from recsvc.application.endpoints import listen_failure, only_this_host, with_backlog
from recsvc.logs import Logger
from recsvc.media.pipeline import MediaPolicy
from recsvc.application.batching import BatchedRunner
from recsvc.storage.wav import sync_filesystem
from recsvc.media.drain import RtpDrain
from recsvc.admission import AccessPolicy, ConnectionLimits, Connections, StartRate, policy_of
from recsvc.index.indexer import Indexer
from recsvc.metrics import Metrics, live_figures
from recsvc.observers import IRecordingObserver, RecordingObservers, checked_observers
from recsvc.web.site import make_site
from recsvc.web.connections import WebConnections
from recsvc.webhook import Webhook
from recsvc.control.accepting import screen_accepts
from recsvc.control.protocol import ControlFactory
from recsvc.storage.retention import RetentionPolicy
from recsvc.service import RecorderService
from recsvc.session import Limits
from recsvc.storage.folder import Storage
from recsvc.application.threads import background_pool, start_until_shutdown


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


def check_config(config: Config, reactor: Any) -> None:
    """What can only be checked against the machine: the endpoint syntax and
    a storage root that can be created and written. Raises ConfigError."""
    endpoint_for(config, reactor)
    http_endpoint_for(config, reactor)
    create_folders(config)


def create_folders(config: Config) -> None:
    """Create storage.root (which must then be writable) and the folder of
    index.database, where they do not exist. Raises ConfigError naming the key."""
    root = config.storage.root
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as error:
        raise ConfigError("storage.root", f"cannot create {root}: {error.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError("storage.root", f"{root} is not writable")
    folder = os.path.dirname(config.index.database)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ConfigError("index.database",
                          f"cannot create its folder {folder}: {error.strerror}") from None


def endpoint_for(config: Config, reactor: Any) -> IStreamServerEndpoint:
    return _server_endpoint(config.control.listen, "control.listen", reactor)


def http_endpoint_for(config: Config, reactor: Any) -> IStreamServerEndpoint | None:
    """The HTTP side's endpoint; None when http.listen is "off"."""
    if config.http.listen == "off":
        return None
    return _server_endpoint(config.http.listen, "http.listen", reactor)


def _server_endpoint(description: str, key: str, reactor: Any) -> IStreamServerEndpoint:
    try:
        return serverFromString(reactor, with_backlog(description))
    except (ValueError, KeyError, TypeError, ImportError, OSError, RuntimeError) as error:
        # ImportError: ssl: without pyOpenSSL; OSError: a key or cert file
        # missing; RuntimeError: a lone backslash at the end.
        raise ConfigError(key, f"not a valid endpoint: {error}") from None


def open_http_warning(config: Config, endpoint: IStreamServerEndpoint | None) -> str | None:
    """The loud warning owed when anyone on the network may list and play
    the recordings: a listener beyond this host without http.auth."""
    if endpoint is None or config.http.auth.enabled or only_this_host(config.http.listen):
        return None
    return (f"http.listen {config.http.listen!r} is reachable from other machines and "
            "http.auth is not set: anyone who can reach it can list, play and download "
            "every recording. Set http.auth (users or token), or listen on 127.0.0.1.")


_log = Logger()
# Seconds a shutdown waits for the last sidecars to reach hooks.on_finish.
WEBHOOK_GRACE = 5.0
# Threads finishing stopped recordings' files (see makeService): mostly
# waiting for fsyncs, which the filesystem's journal commits together.
FINISHING_THREADS = 32
# Middle-generation collections between two full ones, at least (Python's
# default: 10). A full collection goes over every recording's objects: at
# 2,000 recordings it held the reactor, and every thread, for 50 to 110 ms,
# and with the default came every 5 to 8 s (see makeService).
FULL_COLLECTION_AFTER = 100


# Connections a listener accepts in one turn of the reactor. Twisted's port
# takes 20 more each turn while connections keep waiting, without bound:
# under a flood of connections one turn took tens of milliseconds, and the
# phones' messages waited for it. Accepting stays as fast (turns are short
# and follow one another), and other sockets get their turn in between.
ACCEPTS_PER_TURN = 64


def accept_at_most(port: Any, count: int) -> None:
    """Caps the connections a Twisted TCP port accepts a turn (its
    ``numberAccepts``, which it grows itself); other ports are left alone."""
    if not hasattr(port, "numberAccepts"):
        return
    read = port.doRead

    def capped_read() -> Any:
        port.numberAccepts = min(port.numberAccepts, count)
        return read()

    port.doRead = capped_read


# A connection is handed to the listener once its first data has come (or,
# idle, after about this many seconds): a phone sends its Start at once,
# while connections that never send (a connect/drop flood, a scanner) are
# never accepted and never fill the accept queue, where they would hold up
# the phones' connections or have them dropped.
DEFER_ACCEPT_S = 5


def accept_with_data(port: Any, seconds: int) -> None:
    """TCP_DEFER_ACCEPT on a TCP port's socket, where the system has it."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    listening = getattr(port, "socket", None)
    if option is None or listening is None:
        return
    try:
        listening.setsockopt(socket.IPPROTO_TCP, option, seconds)
    except OSError as error:  # (not a TCP socket)
        _log.info("Connections are accepted before their data: {reason}", reason=str(error))


class Listener(Service):
    """Listens on an endpoint; fails start-up if it cannot (and logs why,
    naming ``key``, its config key).

    With ``screen`` (see recsvc.control.accepting), a plain TCP port
    (not one behind TLS or another wrapper) has each new connection
    screened by it before anything is built for it."""

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: Factory,
                 purpose: str = "control connections", key: str = "control.listen",
                 screen: Callable[[str, bytes | None], Any] | None = None) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self.purpose = purpose
        self.key = key
        self._screen = screen
        self._port: IListeningPort | None = None
        self._started = False
        self._outcome: IListeningPort | Failure | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        Service.startService(self)
        self._started = True
        self._outcome = None
        self._endpoint.listen(self._factory).addBoth(self._settled)
        if isinstance(self._outcome, Failure):
            # Fail start-up synchronously, as twistd needs, before anything else listens.
            self._outcome.raiseException()

    def _settled(self, outcome: IListeningPort | Failure) -> None:
        if isinstance(outcome, Failure):
            reason = (listen_failure(self.key, outcome.value)
                      if outcome.check(CannotListenError) else outcome.getErrorMessage())
            self.log.error("Cannot listen for {purpose}: {reason}",
                           purpose=self.purpose, reason=reason)
        else:
            self._port = outcome
            if (self._screen is not None and getattr(outcome, "factory", None) is self._factory
                    and isinstance(outcome.getHost(), (IPv4Address, IPv6Address))):
                # (Plain TCP only: under TLS or PROXY the bytes are not the
                # phone's yet; a unix socket has no address to limit.)
                screen_accepts(outcome, self._screen)
            else:
                accept_at_most(outcome, ACCEPTS_PER_TURN)
            accept_with_data(outcome, DEFER_ACCEPT_S)
            address = outcome.getHost()
            self.log.info("Listening for {purpose} on {host}:{port}", purpose=self.purpose,
                          host=address.host, port=address.port)
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(outcome)  # a Failure errbacks

    def whenListening(self) -> Deferred[IListeningPort]:
        """The listening port, once there is one; fails if listening failed."""
        assert self._started, "not started"
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        if self._outcome is not None:
            return succeed(self._outcome)
        waiter: Deferred[IListeningPort] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None


class StartedByTwistd(MultiService):
    """The service tree as twistd runs it (``options``: its recsvc Options).
    In the foreground (``twistd -n``), a listener that cannot listen (its
    port taken) ends start-up with the one line it logged and exit status
    1, where twistd would print a traceback for the exception. A daemon's
    exception is left to twistd, which hands it to the waiting parent to
    print (that parent would wait for ever for a child that just exits).
    An embedding application gets the CannotListenError itself."""

    def __init__(self, options: usage.Options) -> None:
        MultiService.__init__(self)
        self._options = options

    def startService(self) -> None:
        try:
            MultiService.startService(self)
        except CannotListenError:
            twistd = getattr(self._options, "parent", None)
            if twistd is not None and not twistd.get("nodaemon", True):
                raise
            raise SystemExit(1) from None


class AfterRecorder(Service):
    """At shutdown, calls ``then`` once the recorder has stopped (its last
    files finished)."""

    def __init__(self, recorder: RecorderService, then: Callable[[], Any]) -> None:
        self._recorder, self._then = recorder, then

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        return self._recorder.when_stopped().addBoth(lambda _: self._then())


class AtStart(Service):
    """Calls ``action`` when the service tree starts."""

    def __init__(self, action: Any) -> None:
        self._action = action

    def startService(self) -> None:
        Service.startService(self)
        self._action()


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
    config_path = None
    root = MultiService()
    if isinstance(config, usage.Options):
        root = StartedByTwistd(config)
        config, config_path = config["config"], config.get("config_path")
    config = as_config(config)
    told = RecordingObservers(checked_observers(observers))
    if reactor is None:
        reactor = global_reactor()
    # As twistd's Options do: an application's config is checked the same
    # way, and the folders are there before anything needs them.
    check_config(config, reactor)
    low, high = config.rtp.port_range
    # Room for a recording on every port, made now (see recsvc.application.descriptors),
    # and again once the reactor runs: a daemon's forked child starts with a
    # table only as large as its open descriptors need. The limit is raised
    # as far as the control port, the recordings and the web port need.
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

    # Blocking work runs on recsvc's own pools of low-priority threads
    # (recsvc.application.threads), not the reactor's (which an embedding
    # application may use for its own): the recordings' file work gathered
    # into a few jobs per reactor turn (fsyncs side by side); a Start's file
    # created on one thread of its own (more starve the reactor of the GIL);
    # a stopped recording's files finished on a pool of their own, whose
    # threads mostly wait for the disk. The measurements behind each size
    # are in docs/benchmarks.md ("Thread pools: how many, and why").
    disk = background_pool("recsvc-disk", maxthreads=10)
    opening = background_pool("recsvc-open", maxthreads=1, minthreads=1)
    finishing = background_pool("recsvc-finish", maxthreads=FINISHING_THREADS)

    def run_blocking(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, disk, f, *args)

    run_recording = BatchedRunner(reactor, lambda: disk)

    def run_opening(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, opening, f, *args)

    def run_finishing(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, finishing, f, *args)

    # The HTTP side's blocking work (password checks, reading and decoding
    # audio, measuring the free space) on a small pool of its own: however
    # many people listen (or guess passwords), the recordings' threads are
    # never theirs.
    web = background_pool("recsvc-http", maxthreads=2)

    def run_web(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, web, f, *args)

    indexer = Indexer(config.index.database, config.storage.root, reactor)
    metrics = Metrics()
    webhook = None if config.hooks.on_finish is None else Webhook(config.hooks.on_finish, reactor)
    recorder = RecorderService(
        clock=reactor,
        ports=RtpDrain(
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
        run_recording=run_recording,
        run_opening=run_opening,
        run_finishing=run_finishing,
        advertise=advertised_address(config),
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
        metrics=metrics,
        webhook=webhook,
        observers=told,
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
    connections = Connections(
        ConnectionLimits(config.control.max_connections, config.control.max_connections_per_ip),
        recorder.access)
    control_endpoint = endpoint_for(config, reactor)
    if not config.control.allow and not only_this_host(config.control.listen):
        _log.warn("control.allow is empty: any machine that reaches {listen} may start "
                  "recordings. List the phones' networks there.", listen=config.control.listen)
    control_factory = ControlFactory(recorder, config.control.max_message_bytes, connections,
                                     config.control.idle_timeout, reactor)
    web_connections: WebConnections | None = None

    def in_use() -> descriptors.InUse:
        return descriptors.InUse(connections.total,
                                 len(recorder.registry) + recorder.starting_count,
                                 0 if web_connections is None
                                 else web_connections.connections.total)

    held_back = descriptors.DescriptorRoom(budget, limit, time.monotonic, in_use)
    control_factory.room = held_back.for_idle_control
    control = Listener(control_endpoint, control_factory, screen=control_factory.admit)
    # MultiService stops children in reverse: the listener closes first, then
    # the recorder drains its recordings.
    recorder.setName("recorder")
    recorder.setServiceParent(root)
    control.setName("control")
    control.setServiceParent(root)
    metrics.watch(functools.partial(live_figures, recorder))
    http_endpoint = http_endpoint_for(config, reactor)
    if http_endpoint is not None:
        warning = open_http_warning(config, http_endpoint)
        if warning is not None:
            # (Not a "warning" key: the legacy log takes that for a Python warning.)
            _log.critical("WARNING: {reason}", reason=warning)
        web_connections = WebConnections(make_site(
            recorder, indexer.run, config.storage.root, run_web, metrics,
            config.http.auth, now=reactor.seconds, allowed_hosts=config.http.allowed_hosts,
            numbers=config.numbers.plan),
            ConnectionLimits(config.http.max_connections, config.http.max_connections_per_ip),
            config.http.request_timeout, reactor, held_back.for_web, metrics)
        http = Listener(http_endpoint, web_connections, "HTTP", "http.listen",
                        screen=web_connections.admit)
        http.setName("http")
        http.setServiceParent(root)
    if webhook is not None:
        # The last recordings' sidecars go out as the recorder finishes them.
        # They are given WEBHOOK_GRACE seconds; what is left is logged.
        AfterRecorder(recorder, lambda: webhook.settled(WEBHOOK_GRACE).addBoth(
            lambda _: webhook.stop())).setServiceParent(root)

    if config_path is not None:
        # SIGHUP: control.allow and devices.allow read again; recordings in
        # progress go on. From the tree's start (before the reactor runs),
        # so that a reload never finds SIGHUP's default, which ends the process.
        hangup = ReloadOnHangup(AccessReload(config_path, recorder, connections), reactor)
        hangup.setName("reload")
        hangup.setServiceParent(root)

    def reactor_running() -> None:
        if not background.running:
            return  # the tree was stopped before the reactor ran (embedded)
        tune_garbage_collector()
        descriptors.grow_table(room)
        start_until_shutdown(reactor, disk)
        start_until_shutdown(reactor, opening)
        start_until_shutdown(reactor, finishing)
        start_until_shutdown(reactor, web)
        # The index's thread (and its connection) lasts until the reactor has
        # stopped, after the recordings have finished; a problem with the
        # index is logged and never stops the recorder.
        indexer.start()
        recorder.reactor_running()

    # Once the reactor runs (and only if the listener could start): finish
    # the recordings a crash left behind, and watch the free space.
    background = AtStart(lambda: reactor.callWhenRunning(reactor_running))
    background.setName("background")
    background.setServiceParent(root)
    return root


def tune_garbage_collector() -> None:
    """What exists now lives as long as the process: out of the garbage
    collector's way (gc.freeze), so that its full collections stay short;
    and those come more rarely (they stall every thread while they run):
    after FULL_COLLECTION_AFTER middle ones at least."""
    gc.freeze()
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_AFTER))


class ReloadOnHangup(Service):
    """From the tree's start, SIGHUP calls ``reload`` in the reactor thread
    (queued until the reactor runs). The handler stays through the
    shutdown, while the recordings are finished (SIGHUP's default would end
    the process then), and the one before it is put back once the reactor
    has shut down."""

    def __init__(self, reload: Callable[[], object], reactor: Any) -> None:
        self.reload, self.reactor = reload, reactor
        self._installed = False

    def startService(self) -> None:
        Service.startService(self)
        if not self._installed:
            self._installed = True
            previous = signal.signal(signal.SIGHUP, self._hangup)
            # (None: a handler not set from Python, which cannot be put back.)
            self.reactor.addSystemEventTrigger(
                "after", "shutdown", signal.signal, signal.SIGHUP,
                signal.SIG_DFL if previous is None else previous)

    def _hangup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)


class AccessReload:
    """Reads control.allow and devices.allow from the config file again
    (on SIGHUP) and applies them to new connections and Starts; a file
    that does not parse changes nothing (logged). Nor does one that would
    open a closed list without saying so (an empty file, or one without
    the list's key): a list opens only as ``allow: []``."""

    log = Logger()

    def __init__(self, path: str | None, recorder: RecorderService,
                 connections: Connections) -> None:
        self.path, self.recorder, self.connections = path, recorder, connections

    def __call__(self) -> bool:
        if self.path is None:
            return False
        try:
            data = read_config_file(self.path)
            policy = access_policy(config_of_file(data, self.path))
            self._check_openings(data, policy)
        except ConfigError as error:
            self.log.error("Reloading {path} failed, the access lists are as they were: "
                           "{reason}", path=self.path, reason=str(error))
            return False
        self.recorder.access = self.connections.policy = policy
        self.log.info("Reloaded {path}: {networks} networks in control.allow, {devices} "
                      "devices in devices.allow (other settings take effect at a restart)",
                      path=self.path,
                      networks=len(policy.networks) or "all", devices=len(policy.devices) or "all")
        return True

    def _check_openings(self, data: Any, policy: AccessPolicy) -> None:
        """Raises ConfigError naming the list that ``policy`` would open
        (let anyone in) when the one in force is closed, unless the file
        gives that list's key itself."""
        if data is None:
            raise ConfigError("", "the file is empty: control.allow and devices.allow were not "
                                  "read (a list opens only when the file says allow: [])")
        now = self.recorder.access
        for key, closed, opens in (
                ("control.allow", now.networks, not policy.networks),
                ("devices.allow", now.devices, not policy.devices)):
            if closed and opens and not gives_key(data, key):
                raise ConfigError(key, "not in the file, which would let anyone in; write "
                                       "allow: [] in its section to mean that")


def descriptor_budget(config: Config) -> descriptors.Budget:
    """The descriptors the control port, the recordings (as many as the
    ports, or recordings.max_active if fewer) and the web port may hold."""
    low, high = config.rtp.port_range
    recordings = high - low + 1
    if config.recordings.max_active:
        recordings = min(recordings, config.recordings.max_active)
    return descriptors.Budget(
        config.control.max_connections, recordings,
        0 if config.http.listen == "off" else config.http.max_connections)


def access_policy(config: Config) -> AccessPolicy:
    """control.allow and devices.allow, as the factory and recorder check them."""
    return policy_of(config.control.allow, config.devices.allow)


def advertised_address(config: Config) -> str | None:
    """The fixed address for Start responses, or None for "the local address
    of each phone's control connection". With ``auto`` and RTP bound to one
    address (not a wildcard), that address is the one that works."""
    if config.rtp.advertise != "auto":
        return config.rtp.advertise
    if config.rtp.interface in ("0.0.0.0", "::"):
        return None
    return config.rtp.interface


def global_reactor() -> Any:
    """The global reactor, imported only when asked for (this module is its
    one importer; `recsvc check-config` checks endpoints against it too)."""
    from twisted.internet import reactor

    return reactor
