"""Tests for recsvc.control.protocol over StringTransport: framing and
dispatch against a FakeRecorder; what the phone sees of the real recorder,
end to end; and the contract any IRecorder keeps (the fake and the real)."""

from __future__ import annotations

import json
import os

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionLost
from twisted.trial.unittest import SynchronousTestCase

from zope.interface.verify import verifyObject

from recsvc.control.commands import SUCCESS, CallParties, StartRequest, StopRequest
from recsvc.control.interfaces import IRecorder, StopRefused, UnknownRecording
from recsvc.control.protocol import ControlFactory
from recsvc.storage.folder import sidecar_path
from recsvc.testing import (FakePhoneLink, FakePortPool, FakeRecorder, ManualRunner,
                            MemoryWriters, memory_recorder)

from tests.support.control import ControlConnections

START = (
    b"cmd=RecordStartRequest&id=7&device=00:a8:59:00:00:01&remote_number=+8613800138000"
    b"&remote_name=%E5%BC%A0%E4%B8%89&local_number=2001&local_name=Desk&dir=in&codec=pcma"
)
STARTED = b"cmd=RecordStartResponse&id=7&result=success&reason=&server=127.0.0.9&port=41000"


class ControlTestsMixin(ControlConnections):
    """Connections to ``self.factory`` over StringTransport."""


class FakeRecorderMixin(ControlTestsMixin):
    """The protocol alone: its recorder is a FakeRecorder."""

    def setUp(self) -> None:
        self.recorder = FakeRecorder()
        self.factory = ControlFactory(self.recorder, max_message_bytes=512)


class RecorderServiceMixin(ControlTestsMixin):
    """End to end: the protocol on a RecorderService (fake ports, files in
    memory, the files' work held until ``self.runner`` runs it)."""

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


class FramingTests(FakeRecorderMixin, SynchronousTestCase):
    def test_bare_start(self) -> None:
        """A bare Start (the firmware's style) gets a bare Start response with
        the recording's own address and port."""
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.assertEqual(self.sent(transport), STARTED)

    def test_terminated_styles(self) -> None:
        """A peer that ends messages with CRLF, LF or NUL gets replies ended
        the same way."""
        for terminator in (b"\r\n", b"\n", b"\x00"):
            self.setUp()
            protocol, transport = self.connect()
            protocol.dataReceived(START + terminator)
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
        self.assertEqual(self.sent(transport), STARTED + b"\r\n")

    def test_several_messages_one_read(self) -> None:
        """Several messages in one read, run together, are each answered."""
        protocol, transport = self.connect()
        protocol.dataReceived(START + START.replace(b"id=7", b"id=8"))
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
        self.assertEqual(self.sent(other_transport), STARTED)
        self.assertFalse(other_transport.disconnecting)


class DispatchTests(FakeRecorderMixin, SynchronousTestCase):
    def test_start_handed_to_recorder(self) -> None:
        """A Start is handed to the recorder with the connection as the
        phone's link, the peer's address and the local one; the recorder's
        answer is the reply."""
        protocol, transport = self.connect()
        self.assertEqual(self.recorder.links, [protocol])
        protocol.dataReceived(START)
        [(request, link, peer, local_host)] = self.recorder.starts
        self.assertEqual(
            (request.recording_id, request.parties.remote_name, link, peer, local_host),
            ("7", "\u5f20\u4e09", protocol, "127.0.0.1", "127.0.0.9"))
        self.assertEqual(self.sent(transport), STARTED)

    def test_refused_start_answered_with_reason(self) -> None:
        """A Start the recorder refuses is answered failed with its reason."""
        self.recorder.start_refusal = "disk full"
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.assertEqual(self.sent(transport), b"cmd=RecordStartResponse&id=7&result=failed"
                                               b"&reason=disk full&server=&port=")

    def test_stop_answered_once_recorder_has_finished(self) -> None:
        """A Stop is answered success when the recorder's answer fires, not
        before; the Stop handed over carries the phone's updates."""
        self.recorder.hold_stops = True
        protocol, transport = self.connect()
        protocol.dataReceived(START)
        self.sent(transport)
        protocol.dataReceived(b"cmd=RecordStopRequest&id=7&reason=hangup&remote_number=555")
        self.assertEqual(self.sent(transport), b"")
        [(request, link, peer)] = self.recorder.stops
        self.assertEqual((request.reason, request.updates, link, peer),
                         ("hangup", (("remote_number", "555"),), protocol, "127.0.0.1"))
        self.recorder.finish("7")
        self.assertEqual(self.sent(transport), b"cmd=RecordStopResponse&id=7&result=success")

    def test_failed_stop_answered_with_reason(self) -> None:
        """A Stop the recorder refuses (StopRefused) is answered failed with
        the refusal's reason; one that fails otherwise (the file could not
        be finished), failed with storage error."""
        for failure, reason in ((StopRefused("not this phone's recording"),
                                 b"not this phone's recording"),
                                (OSError(5, "Input/output error"), b"storage error")):
            self.setUp()
            self.recorder.stop_failure = failure
            protocol, transport = self.connect()
            protocol.dataReceived(START)
            self.sent(transport)
            protocol.dataReceived(b"cmd=RecordStopRequest&id=7")
            self.assertEqual(self.sent(transport),
                             b"cmd=RecordStopResponse&id=7&result=failed&reason=" + reason)

    def test_lost_connection_told_to_recorder(self) -> None:
        """A connection that breaks is handed to the recorder as lost."""
        protocol, transport = self.connect()
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.recorder.links, [])

    def test_stop_unknown_id(self) -> None:
        """A Stop for an unknown id is answered failed, unknown id."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStopRequest&id=9")
        self.assertEqual(
            self.sent(transport), b"cmd=RecordStopResponse&id=9&result=failed&reason=unknown id"
        )

    def test_stop_response_accepted_quietly(self) -> None:
        """A RecordStopResponse from the phone gets no reply."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStopResponse&id=7&result=success")
        self.assertEqual(self.sent(transport), b"")
        self.assertFalse(transport.disconnecting)

    def test_missing_id(self) -> None:
        """A Start without an id is refused with reason missing id; the
        recorder is only told a bad Start was refused, and opens nothing."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStartRequest&device=x&codec=PCMA")
        self.assertEqual(
            self.sent(transport),
            b"cmd=RecordStartResponse&id=&result=failed&reason=missing id&server=&port=",
        )
        self.assertEqual((self.recorder.starts, self.recorder.bad_starts), ([], 1))

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
        self.assertTrue(self.sent(transport).endswith(STARTED + b"\n"))


class ServiceCommandTests(RecorderServiceMixin, SynchronousTestCase):
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

    def test_unsupported_codec(self) -> None:
        """A Start with a codec recsvc cannot record is refused, naming it."""
        protocol, transport = self.connect()
        protocol.dataReceived(START.replace(b"codec=pcma", b"codec=G729"))
        self.assertEqual(
            self.sent(transport),
            b"cmd=RecordStartResponse&id=7&result=failed&reason=unsupported codec G729 (use PCMA, PCMU, G722)&server=&port=",
        )


class OtherPhoneTests(RecorderServiceMixin, SynchronousTestCase):
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


class ConnectionTests(RecorderServiceMixin, SynchronousTestCase):
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


class DescriptorReserveTests(RecorderServiceMixin, SynchronousTestCase):
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


class RecorderContract:
    """What the control protocol relies on from any IRecorder, run against
    the real RecorderService and the FakeRecorder so the fake cannot drift."""

    def make_recorder(self) -> IRecorder:
        raise NotImplementedError

    def finish_stopping(self, recorder: IRecorder) -> None:
        """Bring the recorder to a stop, as shutdown would."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.recorder = self.make_recorder()
        self.link = FakePhoneLink()
        self.recorder.link_connected(self.link)

    def start(self, recording_id: str = "7"):
        request = StartRequest(recording_id, "00a859000001", "PCMA", "in",
                               CallParties(remote_number="2001"))
        return self.successResultOf(
            self.recorder.start_recording(request, self.link, "127.0.0.1", "127.0.0.9"))

    def test_provides_interface(self) -> None:
        """It declares IRecorder and has every method with arguments the
        protocol's calls fit."""
        self.assertTrue(verifyObject(IRecorder, self.recorder))

    def test_start_accepted(self) -> None:
        """A good Start is answered success with the local address and a
        port; the link is told it now carries a recording."""
        self.assertFalse(self.recorder.carries_recordings(self.link))
        response = self.start()
        self.assertEqual((response.recording_id, response.result, response.server),
                         ("7", SUCCESS, "127.0.0.9"))
        self.assertIsInstance(response.port, int)
        self.assertTrue(self.recorder.carries_recordings(self.link))
        self.assertTrue(self.link.carrying)

    def test_stop_fires_with_summary(self) -> None:
        """A Stop of a recording from its own link fires with the finished
        recording's summary, the Stop's reason and updates in it; the link
        no longer carries it."""
        self.start()
        summary = self.successResultOf(self.recorder.stop_recording(
            StopRequest("7", "hangup", (("remote_number", "555"),)), self.link, "127.0.0.1"))
        self.assertEqual((summary.info.recording_id, summary.info.parties.remote_number,
                          summary.stop_reason, summary.stopped_by),
                         ("7", "555", "hangup", "phone"))
        self.assertFalse(self.recorder.carries_recordings(self.link))
        self.assertFalse(self.link.carrying)

    def test_stop_of_unknown_id_fails(self) -> None:
        """A Stop of an id that is not recording fails with UnknownRecording."""
        self.failureResultOf(
            self.recorder.stop_recording(StopRequest("nope"), self.link, "127.0.0.1"),
            UnknownRecording)

    def test_lost_link_ends_its_recordings(self) -> None:
        """Once its link is lost, a recording is no longer carried (the
        link is told) and a Stop of it fails with UnknownRecording."""
        self.start()
        self.recorder.link_lost(self.link)
        self.assertFalse(self.recorder.carries_recordings(self.link))
        self.assertFalse(self.link.carrying)
        self.failureResultOf(
            self.recorder.stop_recording(StopRequest("7"), FakePhoneLink(), "127.0.0.1"),
            UnknownRecording)

    def test_when_stopped(self) -> None:
        """when_stopped fires once the recorder has stopped, not before."""
        stopped = self.recorder.when_stopped()
        self.assertNoResult(stopped)
        self.finish_stopping(self.recorder)
        self.successResultOf(stopped)


class RecorderServiceContractTests(RecorderContract, SynchronousTestCase):
    def make_recorder(self) -> IRecorder:
        service = memory_recorder(self.mktemp())
        service.startService()
        return service

    def finish_stopping(self, recorder: IRecorder) -> None:
        self.successResultOf(recorder.stopService())


class FakeRecorderContractTests(RecorderContract, SynchronousTestCase):
    def make_recorder(self) -> IRecorder:
        return FakeRecorder()

    def finish_stopping(self, recorder: IRecorder) -> None:
        recorder.stop_finished()
