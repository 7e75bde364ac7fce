"""The control port's screening accept loop (recsvc.control.accepting),
over real loopback sockets: phones behind one address record more calls at
once than control.max_connections_per_ip, and a connection that is no
phone is refused before anything is built for it; and, on a fake port, what
the loop does when accept() fails."""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from recsvc.admission import NOT_CONTROL, TOO_MANY_FROM_IP
from recsvc.phonesim.phone import rtp_packets, send_rtp
from recsvc.control.accepting import screen_accepts
from recsvc.control.commands import StartResponse, StopResponse, decode_message, parse_command
from recsvc.control.framing import MessageFramer
from recsvc.phonesim.simulator import finished_recordings
from recsvc.application.listener import accept_with_data
from tests.support.builders import audio
from tests.support.loopback import LoopbackServiceMixin, is_refused
from tests.support.scrape import samples

PER_ADDRESS = 2
PHONES = 12


def start(number: int) -> bytes:
    return (b"cmd=RecordStartRequest&id=nat-%d&device=00a8590000%02x&codec=PCMA\n"
            % (number, number))


def read_command(sock: socket.socket, framer: MessageFramer) -> object:
    """The next command the server sends on ``sock`` (blocking)."""
    while True:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed by the server")
        messages = framer.feed(data)
        if messages:
            return parse_command(decode_message(messages[0]))


def exchange(port: int, first: bytes) -> bytes | None:
    """What the server on ``port`` answers to a connection that sends
    ``first`` (None: it reset the connection). Blocking."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        try:
            return sock.recv(100)
        except ConnectionResetError:
            return None


class BehindOneAddressEndToEndTests(LoopbackServiceMixin, TestCase):
    """A site whose phones all reach the server from 127.0.0.1."""

    def more_config(self) -> dict:
        return {"control": {"listen": "tcp:0:interface=127.0.0.1",
                            "max_connections_per_ip": PER_ADDRESS}}

    @inlineCallbacks
    def test_more_recordings_than_the_per_address_limit(self):
        """
        PHONES phones behind one address (more than six times
        control.max_connections_per_ip) connect and send their Starts all
        at once: every one records, and its audio is kept byte for byte.
        Idle connections from that address are still held to the limit.
        """
        sound = audio(0.2, seed=7)

        def calls() -> tuple[list[str], list[bool]]:
            socks = [socket.create_connection(("127.0.0.1", self.port), timeout=10)
                     for _ in range(PHONES)]
            try:
                for number, sock in enumerate(socks):
                    sock.sendall(start(number))
                framers = [MessageFramer() for _ in socks]
                started = [read_command(sock, framer) for sock, framer in zip(socks, framers)]
                assert all(isinstance(s, StartResponse) for s in started), started
                idle = [socket.create_connection(("127.0.0.1", self.port), timeout=10)
                        for _ in range(PER_ADDRESS + 1)]
                for sock in idle:
                    sock.sendall(b"\n")  # a blank message: taken, and idle
                    sock.settimeout(0.5)
                idle_refused = []
                for sock in idle:
                    try:
                        idle_refused.append(is_refused(sock))
                    except socket.timeout:
                        idle_refused.append(False)  # open, as it should be
                    sock.close()
                results = [s.result for s in started]
                for number, (sock, response) in enumerate(zip(socks, started)):
                    if response.result == "success":
                        send_rtp(rtp_packets(sound), response.server, response.port)
                    sock.sendall(b"cmd=RecordStopRequest&id=nat-%d\n" % number)
                    stopped = read_command(sock, framers[number])
                    assert isinstance(stopped, StopResponse), stopped
                return results, idle_refused
            finally:
                for sock in socks:
                    sock.close()

        results, idle_refused = yield deferToThread(calls)
        self.assertEqual(results, ["success"] * PHONES)
        self.assertEqual(idle_refused, [False] * PER_ADDRESS + [True])
        found = finished_recordings(self.root)
        self.assertEqual(sorted(found), sorted(f"nat-{number}" for number in range(PHONES)))
        self.assertEqual(samples(self.recorder.metrics)[
            ("recsvc_connections_refused_total", (("reason", TOO_MANY_FROM_IP),))], 1)

    @inlineCallbacks
    def test_not_a_phone_refused_before_anything_is_built(self):
        """
        A connection whose first bytes are no control message (here an
        HTTP request) is reset by the listener itself: the recorder never
        sees a connection, and the refusal is counted by its reason.
        """
        def request() -> bool:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                            source_address=("127.0.0.2", 0))
            with sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                return is_refused(sock)

        self.assertTrue((yield deferToThread(request)))
        yield self.wait_for(lambda: samples(self.recorder.metrics).get(
            ("recsvc_connections_refused_total", (("reason", NOT_CONTROL),))) == 1)
        self.assertEqual(self.recorder.connection_count, 0)


class _Hello(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello")


class ScreenedPortTests(TestCase):
    """screen_accepts on a bare Twisted TCP port."""

    @inlineCallbacks
    def test_screens_what_it_is_given_and_outlives_a_bug(self):
        """
        ``admit`` sees each connection's host and first bytes (without
        taking them): None resets the connection, a protocol serves it,
        and an exception (a bug) is logged and costs that connection only.
        """
        seen: list[tuple[str, bytes | None]] = []

        def admit(host: str, first: bytes | None) -> Protocol | None:
            seen.append((host, first))
            if first == b"bug":
                raise RuntimeError("a bug")
            return _Hello() if first == b"cmd=Hello" else None

        port = reactor.listenTCP(0, Factory.forProtocol(_Hello), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        accept_with_data(port, 5)  # (as the service's listeners do: the first bytes are there)
        screen_accepts(port, admit)

        def connect(first: bytes) -> bytes | None:
            return exchange(port.getHost().port, first)

        answers = []
        for first in (b"GET /", b"bug", b"cmd=Hello"):
            answers.append((yield deferToThread(connect, first)))
        self.assertEqual(answers, [None, None, b"hello"])
        self.assertEqual(seen, [("127.0.0.1", b"GET /"), ("127.0.0.1", b"bug"),
                                ("127.0.0.1", b"cmd=Hello")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class _Listening:
    """A listening socket whose accept() gives, in turn, what it was given
    (an exception is raised)."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes

    def accept(self) -> Any:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class _Port:
    """What screen_accepts uses of a Twisted port; its own loop only counted."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.socket = _Listening(outcomes)
        self.twisted_reads = 0

    def doRead(self) -> None:
        self.twisted_reads += 1


class AcceptErrorTests(SynchronousTestCase):
    """What the screening loop does when accept() fails."""

    def test_one_connection_lost_in_the_queue_costs_only_itself(self) -> None:
        """
        An accept() that fails for that one connection (aborted while it
        waited, refused by a firewall) is passed over: the connections
        after it are screened as ever, never handed to Twisted's own loop
        (which would take them without a look at their first bytes).
        """
        phone, server_side = socket.socketpair()
        self.addCleanup(phone.close)
        phone.sendall(b"cmd=RecordStartRequest")
        port = _Port([OSError(errno.ECONNABORTED, "aborted"), OSError(errno.EPERM, "no"),
                      (server_side, ("192.0.2.1", 40000)), BlockingIOError()])
        seen: list[tuple[str, bytes | None]] = []
        screen_accepts(port, lambda host, first: seen.append((host, first)))
        port.doRead()
        self.assertEqual(seen, [("192.0.2.1", b"cmd=RecordStartRequest")])
        self.assertEqual(port.twisted_reads, 0)

    def test_out_of_descriptors_is_left_to_twisted(self) -> None:
        """Out of descriptors (EMFILE), the turn is Twisted's own loop's,
        which knows how to free the queue."""
        port = _Port([OSError(errno.EMFILE, "too many open files")])
        screen_accepts(port, lambda host, first: None)
        port.doRead()
        self.assertEqual(port.twisted_reads, 1)


class _Counted(Protocol):
    lost: list[object] = []

    def connectionLost(self, reason: object = None) -> None:
        _Counted.lost.append(reason)


class TransportFailureTests(TestCase):
    @inlineCallbacks
    def test_a_transport_that_cannot_be_made_costs_its_connection_only(self):
        """
        If Twisted cannot make a transport for a screened connection, the
        failure is logged, the socket closed and the protocol told it is
        lost (so that it gives back its place in the limits); the next
        connection is served.
        """
        _Counted.lost = []
        port = reactor.listenTCP(0, Factory.forProtocol(_Hello), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        accept_with_data(port, 5)
        made = port.transport

        def transport_once_broken(*args):
            port.transport = made
            raise RuntimeError("no transport")

        port.transport = transport_once_broken
        screen_accepts(port, lambda host, first: _Counted() if first == b"x" else _Hello())

        def connect(first: bytes) -> bytes | None:
            return exchange(port.getHost().port, first)

        self.assertIn((yield deferToThread(connect, b"x")), (b"", None))
        self.assertEqual(len(_Counted.lost), 1)
        self.assertEqual((yield deferToThread(connect, b"y")), b"hello")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
