"""Tests for recsvc.tap: twistd's Options, makeService and the reload it
wires, plus twistd itself run as a subprocess."""

from __future__ import annotations

import errno
import functools
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from recsvc.storage import wav
from recsvc.application.batching import BatchedRunner
from recsvc.config import (
    Config, ConfigError, ControlConfig, HttpConfig, IndexConfig, RtpConfig, StorageConfig, parse_config)
from recsvc.control.protocol import ControlFactory
from recsvc.service import RecorderService
from twisted.logger import LogLevel, capturedLogs

from recsvc.admission import ConnectionLimits
from recsvc.application.listener import Listener
from recsvc.tap import WEBHOOK_GRACE, Options, StartupRefused, makeService
from tests.support.servers import free_port

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
LOOPBACK_LISTEN = "tcp:0:interface=127.0.0.1"


def _write_config(testCase: SynchronousTestCase, text: str) -> str:
    path = os.path.abspath(testCase.mktemp())
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _good_config_text(root: str, listen: str = LOOPBACK_LISTEN) -> str:
    return (f'control:\n  listen: "{listen}"\nstorage:\n  root: "{root}"\n'
            'http:\n  listen: "off"\n')


class OptionsTests(SynchronousTestCase):
    """Options validate the whole config up front; a bad one refuses start-up
    (StartupRefused: one line, exit status 1) naming the file and the key."""

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_config_file(self) -> None:
        """--config FILE leaves the parsed Config under options["config"]
        (the default index.database in the file's folder)."""
        root = os.path.abspath(self.mktemp())
        path = _write_config(
            self, _good_config_text(root) + "rtp:\n  port_range: [45000, 45010]\n"
        )
        options = self.parse("--config", path)
        self.assertEqual(
            options["config"],
            Config(
                control=ControlConfig(listen=LOOPBACK_LISTEN),
                rtp=RtpConfig(port_range=(45000, 45010)),
                storage=StorageConfig(root=root),
                index=IndexConfig(database=os.path.join(os.path.dirname(path),
                                                        "var/recsvc.sqlite3")),
                http=HttpConfig(listen="off"),
            ),
        )

    def test_short_option(self) -> None:
        """-c is the short form of --config."""
        root = os.path.abspath(self.mktemp())
        options = self.parse("-c", _write_config(self, _good_config_text(root)))
        self.assertEqual(options["config"].storage.root, root)

    def test_no_config_means_defaults(self) -> None:
        """Without --config the built-in defaults are used (and checked)."""
        here = os.getcwd()
        work = os.path.abspath(self.mktemp())
        os.mkdir(work)
        os.chdir(work)
        self.addCleanup(os.chdir, here)
        options = self.parse()
        self.assertEqual(options["config"], Config())
        self.assertTrue(os.path.isdir(os.path.join(work, "var", "recordings")))

    def test_relative_paths_from_the_config_files_folder(self) -> None:
        """
        A config file's relative storage.root (and default index.database)
        are its folder's, not the working directory's: the service started
        anywhere records where the file says.
        """
        here = os.getcwd()
        self.addCleanup(os.chdir, here)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "etc"))
        elsewhere = os.path.abspath(self.mktemp())
        os.mkdir(elsewhere)
        path = os.path.join(folder, "etc", "recsvc.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(_good_config_text("../var/recordings"))
        os.chdir(elsewhere)
        options = self.parse("--config", os.path.relpath(path))
        self.assertTrue(os.path.isdir(os.path.join(folder, "var", "recordings")))
        self.assertEqual(os.listdir(elsewhere), [])
        self.assertEqual(options["config"].index.database,
                         os.path.join(folder, "etc", "var", "recsvc.sqlite3"))
        self.assertEqual(options["config_path"], path)

    def test_creates_storage_root(self) -> None:
        """A storage root that does not exist yet is created while checking the options."""
        root = os.path.join(os.path.abspath(self.mktemp()), "a", "b")
        self.parse("--config", _write_config(self, _good_config_text(root)))
        self.assertTrue(os.path.isdir(root))

    def test_unknown_key(self) -> None:
        """A config with an unknown key refuses start-up naming the file and the key path."""
        path = _write_config(self, "rtp:\n  prot_range: [41000, 41999]\n")
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertTrue(error.reason.startswith(f"{path}: rtp.prot_range: unknown key"),
                        error.reason)
        self.assertEqual((error.code, error.reason), (f"recsvc: {error.reason}", error.reason))

    def test_bad_value(self) -> None:
        """A bad value refuses start-up naming the file, the key and the problem."""
        path = _write_config(self, "rtp:\n  port_range: [42000, 41000]\n")
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertEqual(error.reason, f"{path}: rtp.port_range: low port above high port")

    def test_missing_file(self) -> None:
        """A missing config file refuses start-up naming the file."""
        path = os.path.abspath(self.mktemp())
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertIn(path, error.reason)

    def test_invalid_yaml(self) -> None:
        """A file that is not YAML refuses start-up naming the file."""
        path = _write_config(self, "control: [\n")
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertIn(path, error.reason)

    def test_bad_endpoint(self) -> None:
        """An endpoint string Twisted cannot parse refuses start-up naming control.listen."""
        root = os.path.abspath(self.mktemp())
        path = _write_config(self, _good_config_text(root, listen="bogus:1"))
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertTrue(error.reason.startswith(f"{path}: control.listen: "), error.reason)
        self.assertIn("bogus", error.reason)

    def test_bad_endpoint_arguments(self) -> None:
        """An endpoint with a bad port or an unknown argument names control.listen."""
        root = os.path.abspath(self.mktemp())
        for listen in ("tcp:http", "tcp:10000:colour=blue"):
            path = _write_config(self, _good_config_text(root, listen=listen))
            error = self.assertRaises(StartupRefused, self.parse, "--config", path)
            self.assertTrue(error.reason.startswith(f"{path}: control.listen: "), error.reason)

    def test_storage_root_under_a_file(self) -> None:
        """
        A storage root that cannot be created (its parent is a regular file,
        which fails even for root) refuses start-up naming storage.root.
        """
        parent = os.path.abspath(self.mktemp())
        with open(parent, "w"):
            pass
        root = os.path.join(parent, "x")
        path = _write_config(self, _good_config_text(root))
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertTrue(error.reason.startswith(f"{path}: storage.root: "), error.reason)
        self.assertIn(root, error.reason)

    def test_storage_root_is_a_file(self) -> None:
        """A storage root that is an existing regular file refuses start-up naming storage.root."""
        root = os.path.abspath(self.mktemp())
        with open(root, "w"):
            pass
        path = _write_config(self, _good_config_text(root))
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertTrue(error.reason.startswith(f"{path}: storage.root: "), error.reason)

    def test_storage_root_not_writable(self) -> None:
        """An existing storage root without write permission refuses start-up naming storage.root."""
        root = os.path.abspath(self.mktemp())
        os.mkdir(root, 0o500)
        self.addCleanup(os.chmod, root, 0o700)
        if os.geteuid() == 0:
            # root may write anywhere: make the permission check say no.
            import recsvc.application.startup as startup_module

            self.patch(startup_module.os, "access", lambda path, mode: False)
        path = _write_config(self, _good_config_text(root))
        error = self.assertRaises(StartupRefused, self.parse, "--config", path)
        self.assertTrue(error.reason.startswith(f"{path}: storage.root: "), error.reason)


class MakeServiceTests(SynchronousTestCase):
    """makeService wires a recorder and a control listener into one MultiService."""

    def mapping(self, **rtp: Any) -> dict[str, Any]:
        return {
            "control": {"listen": LOOPBACK_LISTEN, "max_message_bytes": 1000},
            "rtp": {"interface": "127.0.0.1", "port_range": [45000, 45009], **rtp},
            "storage": {"root": os.path.abspath(self.mktemp()), "format": "pcm16"},
            "http": {"listen": "off"},
        }

    def test_tree(self) -> None:
        """The tree is a MultiService with children named "recorder" and "control"."""
        service = makeService(self.mapping(), reactor=MemoryReactorClock())
        self.assertIsInstance(service, MultiService)
        self.assertTrue(IService.providedBy(service))
        self.assertIsInstance(service.getServiceNamed("recorder"), RecorderService)
        self.assertIsInstance(service.getServiceNamed("control"), Listener)

    def test_listener_stops_first(self) -> None:
        """
        The recorder is added before the listener, so MultiService (which stops
        children in reverse) closes the listener before the recorder drains.
        """
        service = makeService(self.mapping(), reactor=MemoryReactorClock())
        self.assertEqual([child.name for child in service], ["recorder", "control", "background"])

    def test_building_does_not_listen(self) -> None:
        """Building the tree touches no socket; starting it listens."""
        reactor = MemoryReactorClock()
        service = makeService(self.mapping(), reactor=reactor)
        self.assertEqual(reactor.tcpServers, [])
        # MemoryReactor has no listenUDP: starting on it also proves that no
        # RTP port is opened before a recording asks for one.
        service.startService()
        self.addCleanup(service.stopService)
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertIsInstance(factory, ControlFactory)
        self.successResultOf(service.getServiceNamed("control").whenListening())

    def test_start_and_stop(self) -> None:
        """The tree starts and stops on a MemoryReactor; with no recordings stopping is immediate."""
        service = makeService(self.mapping(), reactor=MemoryReactorClock())
        service.startService()
        self.assertTrue(service.getServiceNamed("recorder").running)
        self.assertTrue(service.getServiceNamed("control").running)
        self.successResultOf(service.stopService())
        self.assertFalse(service.getServiceNamed("recorder").running)
        self.assertFalse(service.getServiceNamed("control").running)

    def test_recorder_wiring(self) -> None:
        """The recorder gets the reactor as its clock and the config's ports, storage and advertise."""
        reactor = MemoryReactorClock()
        mapping = self.mapping(advertise="192.0.2.10")
        recorder = makeService(mapping, reactor=reactor).getServiceNamed("recorder")
        self.assertIs(recorder.clock, reactor)
        self.assertEqual(
            (recorder.ports.interface, recorder.ports.low, recorder.ports.high),
            ("127.0.0.1", 45000, 45009),
        )
        self.assertIs(recorder.ports.reactor, reactor)
        self.assertEqual(recorder.storage.root, mapping["storage"]["root"])
        self.assertEqual(recorder.storage.audio_format, "pcm16")
        self.assertEqual(recorder.advertise, "192.0.2.10")

    def test_advertise_auto(self) -> None:
        """advertise: auto with RTP on a wildcard address gives the recorder
        None: each phone's own local address is used. With RTP bound to one
        address, auto advertises that address."""
        mapping = self.mapping()
        mapping["rtp"]["interface"] = "0.0.0.0"
        recorder = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder")
        self.assertIsNone(recorder.advertise)
        mapping["rtp"]["interface"] = "127.0.0.2"
        recorder = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder")
        self.assertEqual(recorder.advertise, "127.0.0.2")

    def test_media_settings_wired(self) -> None:
        """Every rtp.* timeline, source and timeout setting and
        storage.max_duration reach the recorder under their own names."""
        mapping = self.mapping(
            reorder_window_ms=300, max_gap_fill=7, timeout=45, first_packet_timeout=4,
            dtmf_payload_type=96, source="strict", max_packet_ms=60,
        )
        mapping["storage"]["max_duration"] = 600
        recorder = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder")
        policy, limits = recorder.media_policy, recorder.limits
        self.assertEqual(
            (policy.reorder_window_ms, policy.max_gap_fill, policy.dtmf_payload_type, policy.source,
             policy.max_packet_ms),
            (300, 7.0, 96, "strict", 60),
        )
        self.assertEqual(
            (limits.first_packet_timeout, limits.timeout, limits.max_duration), (4.0, 45.0, 600.0)
        )

    def test_node_wired(self) -> None:
        """The config's node is the recorder's, for its sidecars."""
        mapping = dict(self.mapping(), node="berlin-1")
        recorder = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder")
        self.assertEqual(recorder.node, "berlin-1")

    def test_rtp_reading_wired(self) -> None:
        """rtp.read_interval_ms becomes the RTP reader's tick (in seconds) and
        rtp.receive_buffer_kb its sockets' receive buffer (in bytes)."""
        mapping = self.mapping(read_interval_ms=20, receive_buffer_kb=128)
        sockets = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder").ports
        self.assertEqual((sockets.tick, sockets.receive_buffer), (0.02, 128 * 1024))
        sockets = makeService(self.mapping(), reactor=MemoryReactorClock()).getServiceNamed("recorder").ports
        self.assertEqual((sockets.tick, sockets.receive_buffer), (0.005, 512 * 1024))

    def test_sync_each_file(self) -> None:
        """storage.sync_each_file: true leaves each recording to make its own
        file durable (no filesystem sync)."""
        mapping = self.mapping()
        mapping["storage"]["sync_each_file"] = True
        recorder = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder")
        self.assertIsNone(recorder.syncing.sync_filesystem)

    def test_sync_filesystem(self) -> None:
        """storage.sync_each_file: false (the default) gives the recorder a
        filesystem sync, and it is the storage root's filesystem it syncs."""
        mapping = self.mapping()
        root = mapping["storage"]["root"]
        os.makedirs(root)
        recorder = makeService(mapping, reactor=MemoryReactorClock()).getServiceNamed("recorder")
        self.assertTrue(callable(recorder.syncing.sync_filesystem))
        synced: list[tuple[int, int]] = []

        def syncfs(fd: int) -> int:
            status = os.fstat(fd)
            synced.append((status.st_dev, status.st_ino))
            return 0

        self.patch(wav, "_syncfs", syncfs)
        recorder.syncing.sync_filesystem()
        expected = os.stat(root)
        self.assertEqual(synced, [(expected.st_dev, expected.st_ino)])

    def test_blocking_work_batched(self) -> None:
        """The recordings write through a BatchedRunner on the reactor; the
        service's own blocking work does not, and Starts' files are created,
        and stopped recordings' files finished, through runners of their own."""
        reactor = MemoryReactorClock()
        recorder = makeService(self.mapping(), reactor=reactor).getServiceNamed("recorder")
        self.assertIsInstance(recorder.run_recording, BatchedRunner)
        self.assertIs(recorder.run_recording.reactor, reactor)
        self.assertNotIsInstance(recorder.run_blocking, BatchedRunner)
        self.assertIsNotNone(recorder.run_opening)
        self.assertIsNot(recorder.run_opening, recorder.run_blocking)
        self.assertNotIn(recorder.run_finishing, (None, recorder.run_blocking,
                                                  recorder.run_recording, recorder.run_opening))

    def test_accepts_config(self) -> None:
        """A Config works as well as a mapping."""
        mapping = self.mapping()
        service = makeService(parse_config(mapping), reactor=MemoryReactorClock())
        self.assertEqual(service.getServiceNamed("recorder").storage.root, mapping["storage"]["root"])

    def test_accepts_options(self) -> None:
        """makeService takes twistd's parsed Options, as the plugin hands them over."""
        root = os.path.abspath(self.mktemp())
        options = Options()
        options.parseOptions(["--config", _write_config(self, _good_config_text(root))])
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        self.assertEqual(service.getServiceNamed("recorder").storage.root, root)
        service.startService()
        self.addCleanup(service.stopService)
        [(port, _, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))

    def test_hangup_reloads_from_the_start(self) -> None:
        """
        Launched with a config file, the tree handles SIGHUP from its start
        (twistd starts it before the reactor runs, and SIGHUP's default
        would end the process): the access lists are read again in the
        reactor thread. The handler stays while the tree stops (the
        recordings being finished); the one before it is back once the
        reactor has shut down.
        """
        root = os.path.abspath(self.mktemp())
        path = _write_config(self, _good_config_text(root))
        options = Options()
        options.parseOptions(["--config", path])

        class Reactor(MemoryReactorClock):
            def callFromThread(self, function, *args) -> None:
                queued.append(functools.partial(function, *args))

        queued: list[Any] = []
        reactor = Reactor()
        service = makeService(options, reactor=reactor)
        recorder = service.getServiceNamed("recorder")
        before = signal.getsignal(signal.SIGHUP)
        service.startService()
        installed = signal.getsignal(signal.SIGHUP)
        try:
            # (Checked before the signal: the default would end the tests.)
            self.assertNotEqual(installed, before)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("devices:\n  allow: [00a859000001]\n")
            os.kill(os.getpid(), signal.SIGHUP)
            [reload] = queued
            self.assertTrue(recorder.access.allows_device("00a859000002"))
            reload()
            self.assertFalse(recorder.access.allows_device("00a859000002"))
        finally:
            service.stopService()
            self.assertEqual(signal.getsignal(signal.SIGHUP), installed)
            for call, args, kwargs in reactor.triggers["after"]["shutdown"]:
                call(*args, **kwargs)
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

    def test_stopped_before_the_reactor_runs(self) -> None:
        """An embedded tree started and stopped before the reactor runs
        starts nothing when it does run: no disk watch, no timers."""
        reactor = MemoryReactorClock()
        service = makeService(self.mapping(), reactor=reactor)
        service.startService()
        self.successResultOf(service.stopService())
        reactor.run()
        self.assertEqual(reactor.getDelayedCalls(), [])
        self.assertIsNone(service.getServiceNamed("recorder").disk._loop)

    def test_no_hangup_handler_when_embedded(self) -> None:
        """Built from a mapping (embedded in another application), the tree
        leaves the process's SIGHUP alone."""
        before = signal.getsignal(signal.SIGHUP)
        service = makeService(self.mapping(), reactor=MemoryReactorClock())
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

    def test_access_and_limits_from_config(self) -> None:
        """control.allow, devices.allow and the limits reach the recorder and
        the control factory (one policy, which a reload replaces in both)."""
        mapping = self.mapping()
        mapping["control"].update(allow=["10.0.0.0/8"], max_connections=7,
                                  max_connections_per_ip=3, idle_timeout=42)
        mapping["devices"] = {"allow": ["00:A8:59:00:00:01"]}
        mapping["recordings"] = {"max_active": 5, "max_per_device": 2,
                                 "max_starts_per_minute": 9, "max_pending_per_address": 11}
        service = makeService(mapping, reactor=MemoryReactorClock())
        recorder = service.getServiceNamed("recorder")
        factory = service.getServiceNamed("control")._factory
        self.assertEqual((recorder.max_active, recorder.max_per_device,
                          recorder.start_rate.per_minute, recorder.max_pending_per_address),
                         (5, 2, 9, 11))
        self.assertTrue(recorder.access.allows_device("00a859000001"))
        self.assertFalse(recorder.access.allows_device("00a859000002"))
        self.assertIs(factory.connections.policy, recorder.access)
        self.assertEqual((factory.connections.limits, factory.idle_timeout),
                         (ConnectionLimits(7, 3), 42))
        self.assertFalse(recorder.access.allows_peer("192.0.2.1"))

    def test_loud_warnings(self) -> None:
        """Start-up warns when the recordings can be listed from other
        machines (HTTP beyond loopback without http.auth) and when any
        machine may start recordings (control.allow empty, listener not
        loopback)."""
        mapping = self.mapping()
        mapping["http"] = {"listen": "tcp:0"}
        mapping["control"]["listen"] = "tcp:0"
        with capturedLogs() as events:
            makeService(mapping, reactor=MemoryReactorClock())
        [critical] = [e for e in events if e["log_level"] == LogLevel.critical]
        self.assertIn("http.auth is not set", critical["reason"])
        self.assertTrue(any("control.allow is empty" in e["log_format"] for e in events))
        mapping["control"]["allow"] = ["10.0.0.0/8"]
        mapping["http"]["auth"] = {"token": "a-long-bearer-token-0123456789"}
        with capturedLogs() as events:
            makeService(mapping, reactor=MemoryReactorClock())
        self.assertFalse([e for e in events if e["log_level"] >= LogLevel.warn])

    def test_webhook_stops_after_the_recorder(self) -> None:
        """With hooks.on_finish, the webhook is stopped only once the
        recorder has finished its recordings at shutdown (their sidecars
        still go out), after a grace for deliveries under way."""
        mapping = self.mapping()
        mapping["hooks"] = {"on_finish": "http://127.0.0.1:9/hook"}
        reactor = MemoryReactorClock()
        service = makeService(mapping, reactor=reactor)
        recorder = service.getServiceNamed("recorder")
        webhook = recorder.webhook
        self.assertIsNotNone(webhook)
        service.startService()
        finished = Deferred()
        self.patch(recorder, "when_stopped", lambda: finished)
        stopping = service.stopService()
        webhook.deliver({"id": "late"})  # the last file, finished while draining
        self.assertFalse(webhook._stopped)
        finished.callback(None)
        self.assertFalse(webhook._stopped)  # its delivery is given WEBHOOK_GRACE
        reactor.advance(WEBHOOK_GRACE)
        self.assertTrue(webhook._stopped)
        self.successResultOf(stopping)

    def test_bad_mapping(self) -> None:
        """A bad mapping is a ConfigError naming the key, before anything is built."""
        mapping = self.mapping()
        mapping["rtp"]["prot_range"] = [1, 2]
        error = self.assertRaises(ConfigError, makeService, mapping, reactor=MemoryReactorClock())
        self.assertEqual(error.key, "rtp.prot_range")

    def test_listen_failure_fails_start(self) -> None:
        """If the control port cannot be had, starting the tree raises."""
        reactor = RaisingMemoryReactor(listenException=CannotListenError("", 0, OSError("in use")))
        service = makeService(self.mapping(), reactor=reactor)
        self.assertRaises(CannotListenError, service.startService)

    def test_listen_failure_under_twistd_exits(self) -> None:
        """
        The tree twistd runs (built from its Options) ends start-up with
        exit status 1 when a port cannot be had: the one line logged says
        why, naming the key (twistd would print a traceback for the
        CannotListenError).
        """
        root = os.path.abspath(self.mktemp())
        options = Options()
        options.parseOptions(["--config", _write_config(self, _good_config_text(root))])
        taken = CannotListenError("127.0.0.1", 10000, OSError(errno.EADDRINUSE, "in use"))
        service = makeService(options, reactor=RaisingMemoryReactor(listenException=taken))
        with capturedLogs() as events:
            exit = self.assertRaises(SystemExit, service.startService)
        self.assertEqual(exit.code, 1)
        [error] = [event for event in events if event["log_level"] == LogLevel.error]
        self.assertEqual(error["reason"], "control.listen: 127.0.0.1:10000 is taken (another "
                         "recsvc running?): stop what listens there, or set another port in "
                         "control.listen")

    def test_listen_failure_of_a_daemon_left_to_twistd(self) -> None:
        """
        Under twistd as a daemon (no --nodaemon), the CannotListenError
        itself reaches twistd, which hands it to the parent process waiting
        for the daemon's start to print (an exit without it would leave
        that parent waiting for ever).
        """
        root = os.path.abspath(self.mktemp())
        options = Options()
        options.parseOptions(["--config", _write_config(self, _good_config_text(root))])
        options.parent = {"nodaemon": False}  # (twistd's ServerOptions, as it sets it)
        taken = CannotListenError("127.0.0.1", 10000, OSError(errno.EADDRINUSE, "in use"))
        service = makeService(options, reactor=RaisingMemoryReactor(listenException=taken))
        self.assertRaises(CannotListenError, service.startService)


class TwistdTests(SynchronousTestCase):
    """twistd itself, as a user runs it (real reactor, subprocess)."""

    def twistd(self, *args: str) -> tuple[int, str]:
        cwd = os.path.abspath(self.mktemp())
        os.mkdir(cwd)
        try:
            result = subprocess.run(
                [TWISTD, "--nodaemon", "--pidfile=", "recsvc", *args],
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired as timeout:
            self.fail(f"twistd kept running (it started serving): {timeout.output!r}")
        return result.returncode, result.stdout

    def test_unknown_key(self) -> None:
        """
        With an unknown key twistd exits non-zero at once (it never starts
        serving, so never listens), says which key, and creates no storage root.
        """
        root = os.path.abspath(self.mktemp())
        path = _write_config(
            self,
            _good_config_text(root, listen=f"tcp:{free_port()}:interface=127.0.0.1")
            + "rtp:\n  prot_range: [41000, 41999]\n",
        )
        code, output = self.twistd("--config", path)
        self.assertEqual(code, 1, output)
        # One line, the file and the key: no usage block before it, no traceback.
        [line] = output.splitlines()
        self.assertTrue(line.startswith(f"recsvc: {path}: rtp.prot_range: unknown key"), line)
        self.assertFalse(os.path.exists(root))

    def test_missing_file(self) -> None:
        """With a missing config file twistd exits with status 1 and one
        line naming the file."""
        path = os.path.abspath(self.mktemp())
        code, output = self.twistd("--config", path)
        self.assertEqual(code, 1, output)
        self.assertEqual(output.splitlines(),
                         [f"recsvc: cannot read config file {path}: No such file or directory"])

    def test_bad_option_still_shows_usage(self) -> None:
        """An option twistd's recsvc does not know is a usage error: the
        usage, then the option (not a config problem)."""
        code, output = self.twistd("--colour")
        self.assertEqual(code, 1, output)
        self.assertIn("--config", output)
        self.assertIn("option --colour not recognized", output)

    def assert_refused_once(self, output: str, reason: str) -> None:
        """``output`` (twistd's log) says ``reason`` on one line, with no traceback."""
        self.assertNotIn("Traceback", output)
        self.assertEqual(len([line for line in output.splitlines() if reason in line]), 1,
                         output)

    def test_port_in_use(self) -> None:
        """If the control port is taken twistd exits with status 1 at once
        (not hangs), the one line naming the key, the address and the remedy."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            root = os.path.abspath(self.mktemp())
            path = _write_config(
                self, _good_config_text(root, listen=f"tcp:{port}:interface=127.0.0.1")
            )
            code, output = self.twistd("--config", path)
        self.assertEqual(code, 1, output)
        self.assert_refused_once(output, f"control.listen: 127.0.0.1:{port} is taken (another "
                               "recsvc running?): stop what listens there, or set another "
                               "port in control.listen")

    def test_port_in_use_as_a_daemon(self) -> None:
        """
        A daemonizing twistd (no --nodaemon) whose control port is taken
        exits with status 1 at once, its parent saying why on standard
        error, and the log file has the one line; it does not hang.
        """
        folder = os.path.abspath(self.mktemp())
        os.mkdir(folder)
        log = os.path.join(folder, "twistd.log")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            path = _write_config(self, _good_config_text(
                os.path.join(folder, "recordings"), listen=f"tcp:{port}:interface=127.0.0.1"))
            try:
                result = subprocess.run(
                    [TWISTD, f"--pidfile={os.path.join(folder, 'twistd.pid')}",
                     f"--logfile={log}", "recsvc", "--config", path],
                    cwd=folder, capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                self.fail("the daemonizing twistd hung")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}", result.stderr)
        with open(log, encoding="utf-8") as handle:
            self.assertIn(f"control.listen: 127.0.0.1:{port} is taken", handle.read())

    def test_http_port_in_use(self) -> None:
        """A taken HTTP port ends start-up the same way, naming http.listen."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            root = os.path.abspath(self.mktemp())
            path = _write_config(self, _good_config_text(root).replace(
                '"off"', f'"tcp:{port}:interface=127.0.0.1"'))
            code, output = self.twistd("--config", path)
        self.assertEqual(code, 1, output)
        self.assert_refused_once(output, f"http.listen: 127.0.0.1:{port} is taken")


class AccessReloadTests(SynchronousTestCase):
    """What SIGHUP does to control.allow and devices.allow: the reload that
    twistd's tree calls (its "reload" service) opens a closed list only when
    the file says so; a file that does not (empty, or without the key)
    changes neither list and says which key in a logged error."""

    CLOSED = ("control:\n  listen: \"tcp:0:interface=127.0.0.1\"\n  allow: [10.0.0.0/8]\n"
              "devices:\n  allow: [00a859000001]\nhttp:\n  listen: \"off\"\n")

    def setUp(self) -> None:
        self.path = _write_config(self, self.CLOSED + f"storage:\n  root: \"{self.mktemp()}\"\n")
        options = Options()
        options.parseOptions(["--config", self.path])
        tree = makeService(options, reactor=MemoryReactorClock())
        # What ReloadOnHangup calls in the reactor thread on SIGHUP.
        self.reload = tree.getServiceNamed("reload").reload
        self.recorder = tree.getServiceNamed("recorder")
        self.assertTrue(self.reload())  # the lists of the file: closed

    def rewrite(self, text: str) -> tuple[bool, list[dict[str, Any]]]:
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(text)
        with capturedLogs() as events:
            done = self.reload()
        return done, events

    def assert_closed(self) -> None:
        self.assertFalse(self.recorder.access.allows_peer("192.0.2.1"))
        self.assertFalse(self.recorder.access.allows_device("00a859000002"))

    def test_empty_file_keeps_both_lists(self) -> None:
        """An empty file (a truncated write, `> recsvc.yaml`) opens nothing:
        both lists stay closed, and the error names both keys."""
        for text in ("", "# all commented out\n"):
            done, events = self.rewrite(text)
            self.assertFalse(done)
            self.assert_closed()
            [error] = [event for event in events if event["log_level"] == LogLevel.error]
            self.assertIn("control.allow", error["reason"])
            self.assertIn("devices.allow", error["reason"])

    def test_missing_section_keeps_the_lists(self) -> None:
        """A file without the control section (or without its allow key)
        would open control.allow: refused, naming control.allow, and
        devices.allow, which the file does give, is not applied either."""
        for text in ("devices:\n  allow: [00a859000003]\n",
                     "control:\n  listen: tcp:10000\ndevices:\n  allow: [00a859000003]\n"):
            done, events = self.rewrite(text)
            self.assertFalse(done)
            self.assert_closed()
            self.assertFalse(self.recorder.access.allows_device("00a859000003"))
            [error] = [event for event in events if event["log_level"] == LogLevel.error]
            self.assertTrue(error["reason"].startswith("control.allow:"), error["reason"])
        done, events = self.rewrite("control:\n  allow: [10.0.0.0/8]\n")
        self.assertFalse(done)
        [error] = [event for event in events if event["log_level"] == LogLevel.error]
        self.assertTrue(error["reason"].startswith("devices.allow:"), error["reason"])

    def test_list_opens_when_the_file_says_so(self) -> None:
        """`allow: []` written in the file does open a list."""
        done, _ = self.rewrite("control:\n  allow: []\ndevices:\n  allow: [00a859000001]\n")
        self.assertTrue(done)
        self.assertTrue(self.recorder.access.allows_peer("192.0.2.1"))
        self.assertFalse(self.recorder.access.allows_device("00a859000002"))
        done, _ = self.rewrite("control:\n  allow: []\ndevices:\n  allow: []\n")
        self.assertTrue(done)
        self.assertTrue(self.recorder.access.allows_device("00a859000002"))

    def test_open_lists_need_no_key(self) -> None:
        """Lists that are open already stay open with a file that leaves
        them out (the default), and the reload goes through."""
        self.rewrite("control:\n  allow: []\ndevices:\n  allow: []\n")
        done, events = self.rewrite("storage:\n  format: g711\n")
        self.assertTrue(done)
        self.assertEqual([event for event in events if event["log_level"] == LogLevel.error], [])
        done, _ = self.rewrite("devices:\n  allow: [00a859000001]\n")
        self.assertTrue(done)
        self.assertTrue(self.recorder.access.allows_peer("192.0.2.1"))
        self.assertFalse(self.recorder.access.allows_device("00a859000002"))

    def test_unparsable_file_keeps_the_lists(self) -> None:
        """A file that is not YAML changes nothing and says so."""
        done, events = self.rewrite("control: [unclosed\n")
        self.assertFalse(done)
        self.assert_closed()
        [error] = [event for event in events if event["log_level"] == LogLevel.error]
        self.assertIn("not valid YAML", error["reason"])
