"""Tests for recsvc.control.protocol over StringTransport."""

from __future__ import annotations

import json
import os

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionLost
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.protocol import ControlFactory
from recsvc.storage.folder import sidecar_path
from recsvc.testing import FakePortPool, ManualRunner, MemoryWriters, memory_recorder

START = (
    b"cmd=RecordStartRequest&id=7&device=00:a8:59:00:00:01&remote_number=+8613800138000"
    b"&remote_name=%E5%BC%A0%E4%B8%89&local_number=2001&local_name=Desk&dir=in&codec=pcma"
)
STARTED = b"cmd=RecordStartResponse&id=7&result=success&reason=&server=127.0.0.9&port=41000"


class ControlTestsMixin:
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.runner = ManualRunner()
        self.writers = MemoryWriters()
        self.ports = FakePortPool()
        self.service = memory_recorder(
            self.root, writers=self.writers, ports=self.ports, run_blocking=self.runner
        )
        self.service.startService()
        self.factory = ControlFactory(self.service, max_message_bytes=512)

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40404),
        )
        protocol.makeConnection(transport)
        return protocol, transport

    def sent(self, transport: StringTransport) -> bytes:
        value = transport.value()
        transport.clear()
        return value


class FramingTests(ControlTestsMixin, SynchronousTestCase):
    def test_bare_start(self) -> None:
        """A bare Start (the firmware's style) gets a bare Start response with
        the recording's own address and port."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        self.assertEqual(self.sent(transport), STARTED)

    def test_terminated_styles(self) -> None:
        """A peer that ends messages with CRLF, LF or NUL gets replies ended
        the same way."""
        for terminator in (b"\r\n", b"\n", b"\x00"):
            self.setUp()
            protocol, transport = self.connect()
            protocol.dataReceived(START + terminator)
            self.runner.run_pending()  # the file is created off the reactor thread
            self.assertEqual(self.sent(transport), STARTED + terminator)

    def test_split_terminated_message(self) -> None:
        """A terminated peer's message that arrives in pieces is answered
        once it is complete."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStopRequest&id=none\r\n")
        self.sent(transport)
        protocol.dataReceived(START[:30])
        self.assertEqual(self.sent(transport), b"")
        protocol.dataReceived(START[30:] + b"\r\n")
        self.runner.run_pending()  # the file is created off the reactor thread
        self.assertEqual(self.sent(transport), STARTED + b"\r\n")

    def test_several_messages_one_read(self) -> None:
        """Several messages in one read, run together, are each answered."""
        protocol, transport = self.connect()
        protocol.dataReceived(START + START.replace(b"id=7", b"id=8"))
        self.runner.run_pending()  # the file is created off the reactor thread
        replies = self.sent(transport)
        self.assertTrue(replies.startswith(STARTED), replies)
        self.assertIn(b"cmd=RecordStartResponse&id=8&result=success", replies)

    def test_too_long_closes_only_that_connection(self) -> None:
        """A message over the limit closes its connection; another
        connection goes on being served."""
        protocol, transport = self.connect()
        other, other_transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStartRequest&id=1&remote_name=" + b"x" * 600)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.sent(transport), b"")
        other.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        self.assertEqual(self.sent(other_transport), STARTED)
        self.assertFalse(other_transport.disconnecting)


class CommandTests(ControlTestsMixin, SynchronousTestCase):
    def test_start_metadata_decoded(self) -> None:
        """Percent-encoded values are decoded (UTF-8) and '+' is kept."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        info = self.service.registry.get("7").info
        self.assertEqual(info.parties.remote_number, "+8613800138000")
        self.assertEqual(info.parties.remote_name, "\u5f20\u4e09")
        self.assertEqual(info.codec.name, "PCMA")
        self.assertEqual(info.peer, "127.0.0.1")

    def test_hostile_fields_stay_under_root(self) -> None:
        """An id, device or number made to climb out of the storage root
        (``../../x``, an absolute path) still lands under the root."""
        protocol, transport = self.connect()
        protocol.dataReceived(
            b"cmd=RecordStartRequest&id=../../../etc/passwd&device=/etc&remote_number=..%2F..%2Fx"
            b"&dir=in&codec=PCMA"
        )
        self.runner.run_pending()
        self.assertIn(b"result=success", self.sent(transport))
        [path] = self.writers.writers
        root = os.path.realpath(self.root)
        self.assertEqual(os.path.commonpath([root, os.path.realpath(path)]), root)
        self.assertNotIn("..", os.path.relpath(path, root).split(os.sep))

    def test_stop_answered_after_files_finished(self) -> None:
        """The Stop is answered success only once the file and sidecar are on
        disk."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        self.sent(transport)
        protocol.dataReceived(b"cmd=RecordStopRequest&id=7&reason=hangup&remote_number=555")
        self.assertEqual(self.sent(transport), b"")
        self.runner.run_pending()
        self.assertEqual(self.sent(transport), b"cmd=RecordStopResponse&id=7&result=success")
        [path] = self.writers.writers
        with open(sidecar_path(path), encoding="utf-8") as handle:
            self.assertEqual(json.load(handle)["remote_number"], "555")

    def test_stop_from_another_connection(self) -> None:
        """A Stop may come on another connection than the Start's."""
        protocol, _ = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        other, other_transport = self.connect()
        other.dataReceived(b"cmd=RecordStopRequest&id=7")
        self.runner.run_pending()
        self.assertEqual(self.sent(other_transport), b"cmd=RecordStopResponse&id=7&result=success")

    def test_stop_unknown_id(self) -> None:
        """A Stop for an unknown id is answered failed, unknown id."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStopRequest&id=9")
        self.assertEqual(
            self.sent(transport), b"cmd=RecordStopResponse&id=9&result=failed&reason=unknown id"
        )

    def test_stop_storage_error(self) -> None:
        """A Stop whose file cannot be finished is answered failed."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        self.sent(transport)
        self.runner.run_pending()  # the sidecar written at Start
        protocol.dataReceived(b"cmd=RecordStopRequest&id=7")
        [(waiter, f, args)] = self.runner.pending
        self.runner.pending.clear()
        waiter.errback(OSError(5, "Input/output error"))
        self.assertEqual(
            self.sent(transport), b"cmd=RecordStopResponse&id=7&result=failed&reason=storage error"
        )
        self.flushLoggedErrors()

    def test_stop_response_accepted_quietly(self) -> None:
        """A RecordStopResponse from the phone gets no reply."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStopResponse&id=7&result=success")
        self.assertEqual(self.sent(transport), b"")
        self.assertFalse(transport.disconnecting)

    def test_missing_id(self) -> None:
        """A Start without an id is refused with reason missing id."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStartRequest&device=x&codec=PCMA")
        self.assertEqual(
            self.sent(transport),
            b"cmd=RecordStartResponse&id=&result=failed&reason=missing id&server=&port=",
        )
        self.assertEqual(self.ports.open, {})

    def test_unsupported_codec(self) -> None:
        """A Start with a codec recsvc cannot record is refused, naming it."""
        protocol, transport = self.connect()
        protocol.dataReceived(START.replace(b"codec=pcma", b"codec=G729"))
        self.assertEqual(
            self.sent(transport),
            b"cmd=RecordStartResponse&id=7&result=failed&reason=unsupported codec G729 (use PCMA, PCMU, G722)&server=&port=",
        )

    def test_unknown_command(self) -> None:
        """An unknown command with an id gets a failed reply; without an id,
        nothing; the connection stays open either way."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordPauseRequest&id=3")
        self.assertEqual(
            self.sent(transport),
            b"cmd=RecordPauseResponse&id=3&result=failed&reason=unknown command RecordPauseRequest",
        )
        protocol.dataReceived(b"cmd=Hello")
        self.assertEqual(self.sent(transport), b"")
        self.assertFalse(transport.disconnecting)

    def test_malformed_messages(self) -> None:
        """Garbage is logged and dropped; the connection goes on serving."""
        protocol, transport = self.connect()
        for garbage in (b"hello", b"\xff\xfe\x00", b"=&=&", b"cmd=&id=1"):
            protocol.dataReceived(garbage)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(START + b"\n")
        self.runner.run_pending()  # the file is created off the reactor thread
        self.assertTrue(self.sent(transport).endswith(STARTED + b"\n"))


class OtherPhoneTests(ControlTestsMixin, SynchronousTestCase):
    def test_stop_from_another_address_answered_failed(self) -> None:
        """A Stop of a recording from a connection of another address is
        answered failed, naming why; the phone is told nothing, and its
        recording and sidecar are unchanged."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()
        self.sent(transport)
        stranger = self.factory.buildProtocol(None)
        other = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
                                peerAddress=IPv4Address("TCP", "127.0.0.66", 40405))
        stranger.makeConnection(other)
        stranger.dataReceived(b"cmd=RecordStopRequest&id=7&remote_number=%3D666"
                              b"&remote_name=Evil&reason=tampered")
        self.assertEqual(self.sent(other), b"cmd=RecordStopResponse&id=7&result=failed"
                                           b"&reason=not this phone's recording")
        self.assertEqual(self.sent(transport), b"")
        [path] = self.writers.writers
        with open(sidecar_path(path), encoding="utf-8") as handle:
            self.assertEqual(json.load(handle)["remote_number"], "+8613800138000")
        self.assertEqual(self.service.registry.get("7").state, "recording")


class ConnectionTests(ControlTestsMixin, SynchronousTestCase):
    def test_connection_lost_stops_recordings(self) -> None:
        """A broken connection stops the recordings it started; their files
        are finished with stopped_by connection."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()  # the file is created off the reactor thread
        protocol.connectionLost(Failure(ConnectionLost()))
        self.runner.run_pending()
        self.assertIsNone(self.service.registry.get("7"))
        [path] = self.writers.writers
        with open(sidecar_path(path), encoding="utf-8") as handle:
            self.assertEqual(json.load(handle)["stopped_by"], "connection")

    def test_shutdown_with_stop_pending(self) -> None:
        """A phone's Stop being finished when shutdown begins is answered
        success; the connection closes after, and nothing is left running."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()
        self.sent(transport)
        protocol.dataReceived(b"cmd=RecordStopRequest&id=7")
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.runner.run_pending()
        self.assertEqual(self.sent(transport), b"cmd=RecordStopResponse&id=7&result=success")
        self.successResultOf(stopped)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.service.registry), 0)

    def test_connection_lost_while_stopping(self) -> None:
        """A connection that breaks while its Stop is being finished: the
        file is finished and nothing is written to the dead connection."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.runner.run_pending()
        self.sent(transport)
        protocol.dataReceived(b"cmd=RecordStopRequest&id=7")
        protocol.connectionLost(Failure(ConnectionLost()))
        self.runner.run_pending()
        self.assertEqual(self.sent(transport), b"")
        [path] = self.writers.writers
        with open(sidecar_path(path), encoding="utf-8") as handle:
            sidecar = json.load(handle)
        self.assertEqual((sidecar["status"], sidecar["stopped_by"]), ("finished", "phone"))

    def test_rtp_timeout_tells_phone(self) -> None:
        """A recording that gets no RTP is stopped by the server after
        first_packet_timeout, and the phone is sent a RecordStopRequest with
        the reason on its own connection, in its own framing."""
        protocol, transport = self.connect()
        protocol.dataReceived(START + b"\n")
        self.runner.run_pending()
        self.sent(transport)
        self.service.clock.advance(10)
        self.assertEqual(self.sent(transport), b"cmd=RecordStopRequest&id=7&reason=no RTP received\n")
        self.runner.run_pending()
        self.assertIsNone(self.service.registry.get("7"))
        protocol.dataReceived(b"cmd=RecordStopResponse&id=7&result=success\n")
        self.assertEqual(self.sent(transport), b"")

    def test_server_stop_request(self) -> None:
        """At shutdown the phone is sent a RecordStopRequest in its own
        framing, and its connection is closed once the files are finished."""
        protocol, transport = self.connect()
        protocol.dataReceived(START + b"\r\n")
        self.runner.run_pending()  # the file is created off the reactor thread
        self.sent(transport)
        stopped = self.service.stopService()
        self.assertEqual(self.sent(transport), b"cmd=RecordStopRequest&id=7&reason=shutdown\r\n")
        self.assertFalse(transport.disconnecting)
        self.runner.run_pending()
        self.successResultOf(stopped)
        self.assertTrue(transport.disconnecting)


class DescriptorReserveTests(ControlTestsMixin, SynchronousTestCase):
    def test_idle_refused_start_taken(self) -> None:
        """While the free descriptors are down to what the recordings not
        begun need (recsvc.application.descriptors), a control connection that brings
        neither a Start nor a Stop is refused, counted and its place given
        back; one whose first bytes are a Start, or a Stop (a phone that
        reconnected to stop its recording), is taken."""
        from recsvc.admission import TOO_FEW_DESCRIPTORS, ConnectionLimits, Connections
        from recsvc.metrics import Metrics

        self.service.metrics = metrics = Metrics()
        self.factory.connections = Connections(ConnectionLimits(10, 10))
        self.factory.room = lambda: False
        self.assertIsNone(self.factory.admit("10.0.0.1", b"cmd=RecordKeepAlive&id=x\n"))
        self.assertIsNone(self.factory.admit("10.0.0.1"))
        self.assertEqual(self.factory.connections.total, 0)
        self.assertEqual(metrics.registry.get_sample_value(
            "recsvc_connections_refused_total", {"reason": TOO_FEW_DESCRIPTORS}), 2)
        self.assertIsNotNone(self.factory.admit(
            "10.0.0.1", b"cmd=RecordStartRequest&id=x&device=00a859000001&codec=PCMA\n"))
        self.assertIsNotNone(self.factory.admit("10.0.0.1", b"cmd=RecordStopRequest&id=x\n"))
        self.factory.room = lambda: True
        self.assertIsNotNone(self.factory.admit("10.0.0.1"))
