"""A control port under abuse: the control protocol's defences (units, over
StringTransport and a Clock) and a good phone served through a flood of
misbehaving clients (real loopback sockets, the abuse from another process).
Its speed is measured by bench/flood.py, not here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from twisted.internet.address import IPv4Address
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, KeyPair, PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from hypothesis import given, settings
from hypothesis import strategies as st

from recsvc.phonesim.abuse import KINDS, Abuser
from recsvc.config import Config
from recsvc.metrics import Metrics
from recsvc.phonesim.phone import timed_call
from recsvc.control.commands import decode_message
from recsvc.control.protocol import (
    MAX_BAD_MESSAGES,
    MESSAGES_PER_TURN,
    ControlFactory,
)
from recsvc.control.framing import MessageFramer
from recsvc.phonesim.simulator import finished_recordings, tone
from recsvc.testing import ManualRunner, memory_recorder
from recsvc.storage.wav import read_audio
from tests.support.builders import start_line
from tests.support.control import DefendedServerMixin
from tests.support.loopback import LoopbackServiceMixin, reap
from tests.support.scrape import samples


class DefenceTests(DefendedServerMixin, SynchronousTestCase):
    """What one misbehaving connection can make the server do."""

    def answers(self, transport: StringTransport) -> list[bytes]:
        return self.sent(transport).splitlines()

    def test_many_messages_handled_a_few_a_turn(self) -> None:
        """
        Messages that arrive together are handled MESSAGES_PER_TURN a
        reactor turn, and the socket is not read while some wait: another
        phone's message, read meanwhile, is handled at once. The socket is
        read again once all have been handled.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"".join(start_line(n) for n in range(3 * MESSAGES_PER_TURN + 1)))
        self.runner.run_pending()
        self.assertEqual(len(self.answers(transport)), MESSAGES_PER_TURN)
        self.assertEqual(transport.producerState, "paused")
        other, other_transport = self.connect()
        other.dataReceived(start_line(1000))
        self.runner.run_pending()
        self.assertEqual(len(self.answers(other_transport)), 1)
        self.clock.advance(0)  # (Clock runs the turns one after another)
        self.runner.run_pending()
        self.assertEqual(len(self.answers(transport)), 2 * MESSAGES_PER_TURN + 1)
        self.assertEqual(len(self.recorder.registry), 3 * MESSAGES_PER_TURN + 2)
        self.assertEqual(transport.producerState, "producing")

    def test_peer_that_does_not_read_is_not_read(self) -> None:
        """
        While the transport says the peer does not take the replies (its
        buffer is full: it pauses its producer, the protocol), the socket is
        not read; when the peer reads again, neither are we held back.
        """
        protocol, transport = self.connect()
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_read_waits_for_both(self) -> None:
        """
        Reading resumes only when the replies flow and no message waits:
        replies draining while messages wait keep the socket unread.
        """
        protocol, transport = self.connect()
        protocol.pauseProducing()
        protocol.dataReceived(b"".join(start_line(n) for n in range(MESSAGES_PER_TURN + 1)))
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(0)
        self.assertEqual(transport.producerState, "producing")

    def test_garbage_closes_the_connection(self) -> None:
        """
        MAX_BAD_MESSAGES messages in a row that cannot be read close the
        connection, counted by reason; each Start among them was answered.
        Bad messages and closings are logged once a minute per peer, with
        a count: a client that reconnects to send more does not fill the log.
        What a minute's silence hid is summed up when the minute is over.
        """
        protocol, transport = self.connect()
        with capturedLogs() as events:
            for number in range(MAX_BAD_MESSAGES - 1):
                protocol.dataReceived(b"cmd=RecordStartRequest&codec=PCMA\n")  # no id
            self.assertFalse(transport.disconnecting)
            protocol.dataReceived(b"\x00\xffnot a message\n")
            self.clock.advance(0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.answers(transport)), MAX_BAD_MESSAGES - 1)
        [logged] = [e for e in events if e["log_format"].startswith("Bad control message")]
        self.assertEqual((logged["reason"], logged["count"]), ("missing id", 1))
        [closing] = [e for e in events if e["log_format"].startswith("Closing")]
        self.assertEqual(closing["reason"], f"{MAX_BAD_MESSAGES} bad messages in a row")
        self.assertEqual(closed(self.recorder.metrics), {"bad messages": 1.0})
        with capturedLogs() as events:
            for _ in range(3):  # reconnecting
                protocol, transport = self.connect()
                protocol.dataReceived(b"garbage\n" * MAX_BAD_MESSAGES)
                self.clock.advance(0)  # (8 a turn)
                self.assertTrue(transport.disconnecting)
            self.clock.advance(60)
            protocol, transport = self.connect()
            protocol.dataReceived(b"garbage\n" * MAX_BAD_MESSAGES)
            self.clock.advance(0)
            self.clock.advance(60)
        self.assertEqual(
            [(e["log_format"].split()[0], e.get("reason"), e["count"]) for e in events
             if e["log_format"].startswith(("Bad", "Closing", "Control connections"))],
            [("Control", "bad message", 4 * MAX_BAD_MESSAGES - 1),
             ("Control", "closed (bad messages)", 3),
             ("Control", "bad message", MAX_BAD_MESSAGES),
             ("Control", "closed (bad messages)", 1)])
        self.assertEqual(closed(self.recorder.metrics), {"bad messages": 5.0})

    def test_a_good_message_starts_the_count_again(self) -> None:
        """
        A phone that sometimes sends a bad message is not closed: a message
        that is read starts the count again.
        """
        protocol, transport = self.connect()
        for number in range(3):
            for _ in range(MAX_BAD_MESSAGES - 1):
                protocol.dataReceived(b"\x00\xffnot a message\n")
            protocol.dataReceived(start_line(number))
        self.runner.run_pending()
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.recorder.registry), 3)

    def test_unknown_commands_are_not_garbage(self) -> None:
        """
        A well-formed message of a command the server does not know (a
        firmware's own, say) is answered if owed and logged, and never
        closes the connection.
        """
        protocol, transport = self.connect()
        for number in range(3 * MAX_BAD_MESSAGES):
            protocol.dataReceived(b"cmd=KeepAliveRequest&id=%d\n" % number)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.answers(transport)[0],
                         b"cmd=KeepAliveResponse&id=0&result=failed&reason=unknown command "
                         b"KeepAliveRequest")

    def test_garbage_never_closes_a_recording(self) -> None:
        """
        A connection that carries a recording is not closed for garbage
        (closing it would stop the call): the garbage is only answered and
        logged.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(start_line(1))
        self.runner.run_pending()
        for _ in range(3 * MAX_BAD_MESSAGES):
            protocol.dataReceived(b"\x00\xffnot a message\n")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.recorder.registry), 1)
        self.assertEqual(closed(self.recorder.metrics), {})

    def test_more_data_while_a_turn_waits(self) -> None:
        """
        Data that arrives while messages wait for their turn (as a TLS
        transport delivers, even once reading has paused) waits too: no
        turn handles more than MESSAGES_PER_TURN.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"".join(start_line(n) for n in range(MESSAGES_PER_TURN + 1)))
        protocol.dataReceived(b"".join(start_line(n) for n in range(100, 105)))
        self.runner.run_pending()
        self.assertEqual(len(self.answers(transport)), MESSAGES_PER_TURN)
        self.clock.advance(0)
        self.runner.run_pending()
        self.assertEqual(len(self.answers(transport)), 6)

    def test_nothing_handled_while_the_peer_does_not_read(self) -> None:
        """
        While the peer does not read the replies, waiting messages are not
        handled (each would add a reply); when it reads again, they are.
        """
        protocol, transport = self.connect()
        protocol.pauseProducing()
        protocol.dataReceived(start_line(1) + start_line(2))
        self.clock.advance(0)
        self.runner.run_pending()
        self.assertEqual(self.answers(transport), [])
        protocol.resumeProducing()
        self.clock.advance(0)
        self.runner.run_pending()
        self.assertEqual(len(self.answers(transport)), 2)
        self.assertEqual(transport.producerState, "producing")

    def test_endless_line_closes_the_connection(self) -> None:
        """A line longer than the limit closes the connection, counted."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"cmd=RecordStartRequest\n")
        protocol.dataReceived(b"x" * 5000)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(closed(self.recorder.metrics), {"message too long": 1.0})

    def test_closed_connection_handles_nothing_more(self) -> None:
        """Messages still waiting when the connection is lost are dropped,
        and their turn with them."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"".join(start_line(n) for n in range(2 * MESSAGES_PER_TURN)))
        self.runner.run_pending()
        self.assertEqual(len(self.answers(transport)), MESSAGES_PER_TURN)
        protocol.connectionLost(None)
        # No turn nor idle timer of the connection is left.
        self.assertEqual([call for call in self.clock.getDelayedCalls()
                          if getattr(call.func, "__self__", None) is protocol], [])
        self.clock.advance(0)
        self.runner.run_pending()
        self.assertEqual(self.answers(transport), [])
        self.assertEqual(len(self.recorder.registry), 0)  # stopped with the connection


# Pieces a stream may be cut from: good messages, their parts, terminators,
# escapes, and plain junk.
_PIECES = st.lists(
    st.sampled_from([
        start_line(1), start_line(2)[:-1], b"cmd=RecordStopRequest&id=1&reason=hangup",
        b"cmd=RecordStopResponse&id=9&result=success", b"cmd=RecordStartRequest&id=",
        b"cmd=FooRequest&id=3", b"\n", b"\r\n", b"\x00", b"cmd=", b"&", b"=", b"%", b"%zz",
        b"codec=G729", b"id=" + b"9" * 600,
    ]) | st.binary(max_size=700),
    max_size=14,
)


class ArbitraryInputTests(DefendedServerMixin, SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(_PIECES)
    def test_anything_in_any_pieces(self, pieces: list[bytes]) -> None:
        """
        Whatever arrives, cut anywhere: no handler fails, everything the
        server writes back is a well-formed response, and a connection the
        server closed is counted with its reason.
        """
        self.build(max_message_bytes=512)  # (afresh for each example)
        protocol, transport = self.connect()
        with capturedLogs() as events:
            for piece in pieces:
                if transport.disconnecting:
                    break
                protocol.dataReceived(piece)
                self.clock.advance(0)
                self.runner.run_pending()
        self.assertEqual([e for e in events if "log_failure" in e], [])
        for reply in MessageFramer().feed(transport.value()):
            self.assertTrue(decode_message(reply).cmd.endswith("Response"), reply)
        self.assertEqual(sum(closed(self.recorder.metrics).values()),
                         1.0 if transport.disconnecting else 0.0)


def _certificate() -> PrivateCertificate:
    key = KeyPair.generate(size=2048)
    return key.selfSignedCert(1, commonName="recsvc.test")


class TlsShutdownTests(SynchronousTestCase):
    """The protocol registers itself as its transport's producer; under TLS
    that would hold a close back unless it is unregistered first."""

    def test_shutdown_closes_a_tls_connection(self) -> None:
        """
        At shutdown a phone on a TLS control connection gets the Stop
        request, and the connection is closed once the file is finished.
        """
        clock, runner = Clock(), ManualRunner()
        recorder = memory_recorder(self.mktemp(), clock=clock, run_blocking=runner)
        recorder.startService()
        certificate = _certificate()
        server_factory = TLSMemoryBIOFactory(
            certificate.options(), False, ControlFactory(recorder, 4096, clock=clock),
            clock=clock)
        client_options = CertificateOptions(trustRoot=certificate)

        class Phone(Protocol):
            received, lost = b"", False

            def dataReceived(self, data: bytes) -> None:
                self.received += data

            def connectionLost(self, reason) -> None:
                self.lost = True

        phone = Phone()
        client_factory = TLSMemoryBIOFactory(client_options, True, Factory.forProtocol(lambda: phone),
                                             clock=clock)
        server = server_factory.buildProtocol(None)
        client = client_factory.buildProtocol(None)
        phone_address = IPv4Address("TCP", "127.0.0.1", 40404)
        server_address = IPv4Address("TCP", "127.0.0.9", 10000)
        pump = iosim.connect(
            server, iosim.FakeTransport(server, True, server_address, phone_address),
            client, iosim.FakeTransport(client, False, phone_address, server_address))

        def flush() -> None:
            for _ in range(3):  # (TLS gathers small writes until the clock's next turn)
                clock.advance(0)
                pump.flush()

        client.write(start_line(7))
        flush()
        runner.run_pending()
        flush()
        self.assertIn(b"result=success", phone.received)
        stopped = recorder.stopService()
        flush()
        self.assertIn(b"cmd=RecordStopRequest&id=7&reason=shutdown", phone.received)
        runner.run_pending()
        self.successResultOf(stopped)
        flush()
        self.assertTrue(phone.lost)


class AbuserTests(SynchronousTestCase):
    def test_unknown_kind(self) -> None:
        """An unknown kind of abuse is named, not ignored."""
        error = self.assertRaises(ValueError, Abuser, "127.0.0.1", 1, ("garbage", "nice"))
        self.assertIn("nice", str(error))


class SilentConnectionEndToEndTests(LoopbackServiceMixin, TestCase):
    """Connections are handed over once data has come (TCP_DEFER_ACCEPT)."""

    @inlineCallbacks
    def test_not_accepted_until_it_sends(self):
        """
        A connection that has sent nothing is not accepted (a connect/drop
        flood never reaches the accept queue); once it sends its Start, it
        is accepted and answered at once.
        """
        if not hasattr(socket, "TCP_DEFER_ACCEPT"):
            raise SkipTest("no TCP_DEFER_ACCEPT on this system")
        client = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(client.close)
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(self.recorder.connection_count, 0)
        client.sendall(start_line(1))
        answer = yield deferToThread(client.recv, 1024)
        self.assertIn(b"result=success", answer)
        self.assertEqual(self.recorder.connection_count, 1)


class FloodEndToEndTests(LoopbackServiceMixin, TestCase):
    """A good phone records while another process hammers the control port
    with every kind of abuse, from 127.0.0.2.. (all reaching 127.0.0.1)."""

    timeout = 60
    CALLS = 10

    def more_config(self) -> dict:
        # One phone makes every call here: not a start-rate abuser.
        return {"recordings": {"max_starts_per_minute": 10000}}

    @inlineCallbacks
    def test_good_phone_served_through_a_flood(self):
        """
        Each kind of abuse from an address of its own (127.0.0.2 to .6),
        all at once: the phone's calls all succeed, byte-exact, while the
        server closes the garbage and the endless lines, refuses the Starts
        it cannot take, and lets the half-open client hold its
        control.max_connections_per_ip connections and refuses it more.
        """
        abuser = subprocess.Popen(
            [sys.executable, "-m", "recsvc.phonesim.abuse", "--port", str(self.port), "--seconds", "60",
             "--sources", str(len(KINDS)), "--kinds", *KINDS],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(abuser.stdout.close)
        self.addCleanup(reap, abuser)
        first = yield deferToThread(abuser.stdout.readline)
        self.assertEqual(json.loads(first), {"abusing": list(KINDS)})
        audio = tone(0.5, noise=300)

        def calls():
            return [timed_call("127.0.0.1", self.port, f"good-{n}", audio, interval=0.002)
                    for n in range(self.CALLS)]
        # Until every kind has been at it a while: the calls below are made
        # during the abuse, not before it.
        yield self.wait_for(lambda: self.refused("not a control message") > 0
                            and self.closed("message too long") > 0
                            and self.refused("too many connections from this address") > 0
                            and self.starts_refused("unsupported codec") > 0, seconds=20)
        timings = yield deferToThread(calls)
        abuser.terminate()
        counts = json.loads((yield deferToThread(abuser.stdout.read)).splitlines()[-1])
        abuser.wait()
        self.assertEqual([(t.started.result, t.stopped.result) for t in timings],
                         [("success", "success")] * self.CALLS)
        found = finished_recordings(self.root)
        for timing in timings:
            self.assertEqual(read_audio(found[timing.recording_id])[1], audio)
        # Its own (refusals beyond them are counted above; the ones whose
        # reset has not come back yet look alive to it).
        self.assertGreaterEqual(counts["half-open"]["held"],
                                Config().control.max_connections_per_ip)

    def closed(self, reason: str) -> float:
        return closed(self.recorder.metrics).get(reason, 0.0)

    def refused(self, reason: str) -> float:
        return samples(self.recorder.metrics).get(
            ("recsvc_connections_refused_total", (("reason", reason),)), 0.0)

    def starts_refused(self, reason: str) -> float:
        return samples(self.recorder.metrics).get(
            ("recsvc_starts_refused_total", (("reason", reason),)), 0.0)


def closed(metrics: Metrics) -> dict[str, float]:
    """recsvc_connections_closed_total by reason."""
    return {dict(labels)["reason"]: value for (name, labels), value in samples(metrics).items()
            if name == "recsvc_connections_closed_total"}
